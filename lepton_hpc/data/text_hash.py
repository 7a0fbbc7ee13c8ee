"""MurmurHash3 (the ``mmh3`` package) for hashed features, as scikit-learn's hashers use it.

:func:`signed_index` reproduces ``sklearn.feature_extraction.FeatureHasher`` with
``alternate_sign=True``: the signed 32-bit hash ``h`` of the UTF-8 text (seed 0) gives column
``abs(h) % n_features`` and sign ``+1`` if ``h >= 0`` else ``-1`` (``abs(-2**31)`` taken as
``2**31``, as scikit-learn defines it).
"""

from __future__ import annotations

from ..errors import UserError


def _mmh3():
    try:
        import mmh3
    except ImportError:
        raise UserError("hashing features needs the mmh3 package; install it with "
                        "pip install 'lepton_hpc[text]' (or '[io]')") from None
    return mmh3


def murmur_unsigned(text: str) -> int:
    """The unsigned 32-bit MurmurHash3 of ``text`` (seed 0)."""
    return _mmh3().hash(text, 0, signed=False)


def signed_hasher(n_features: int):
    """A function ``token -> (column, sign)`` as scikit-learn's FeatureHasher maps it."""
    hash32 = _mmh3().hash

    def index(token: str) -> tuple[int, int]:
        h = hash32(token, 0, signed=True)
        return abs(h) % n_features, (1 if h >= 0 else -1)

    return index

"""Text import in one process: CSV / TSV / JSON Lines give scikit-learn's HashingVectorizer features;
labels become sorted classes; bad input names the line."""

import json
import re

import h5py
import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("mmh3")
sk_text = pytest.importorskip("sklearn.feature_extraction.text")
sp = pytest.importorskip("scipy.sparse")

from lepton_hpc import comm as C  # noqa: E402
from lepton_hpc.data import text_features  # noqa: E402
from lepton_hpc.data.text_features import TOKEN_PATTERN, Hasher, finish, parse_ngrams, word_chars  # noqa: E402
from lepton_hpc.data.text_import import import_text  # noqa: E402

DOCS = ["The quick brown fox", "", "Jumps over the lazy dog, the END", "Ünïcode wörds ß and ΣΑΣ", "a b c",
        "fox fox fox fox", "x1 y2 z3 42 4242"]
LABELS = ["b", "a", "b", "c", "a", "b", "c"]


def _run(paths, out, **kw):
    comm = C.self_comm()
    try:
        return import_text(comm, [str(p) for p in paths], str(out), **kw)
    finally:
        C.free(comm)


def _read(out):
    with h5py.File(out, "r") as f:
        g = f["X"]
        X = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))
        classes = [v.decode() if isinstance(v, bytes) else v for v in f["y"].attrs["classes"]]
        return X, f["y"][:], classes, json.loads(g.attrs["hashing"])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_formats_match_hashing_vectorizer(tmp_path, fmt):
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"t": d, "l": l}) + "\n" for d, l in zip(DOCS, LABELS)), encoding="utf-8")
    elif fmt == "csv":
        path.write_text("l,t\n" + "".join(f'{l},"{d}"\n' for d, l in zip(DOCS, LABELS)), encoding="utf-8")
    else:
        path.write_text("l\tt\n" + "".join(f"{l}\t{d}\n" for d, l in zip(DOCS, LABELS)), encoding="utf-8")
    out = tmp_path / "o.h5"
    _run([path], out, text_column="t", label_column="l", ngrams="1,2", hash_bits=8, block_bytes=40)
    X, y, classes, hashing = _read(out)
    want = sk_text.HashingVectorizer(n_features=256, ngram_range=(1, 2)).transform(DOCS)
    assert abs(X - want).max() == 0.0
    assert classes == ["a", "b", "c"] and y.tolist() == [1, 0, 1, 2, 0, 1, 2]
    assert hashing["n_features"] == 256 and hashing["ngrams"] == [1, 2]


@pytest.mark.parametrize("batch", [4096, 3])
def test_hasher_ngrams_unicode_and_edges(monkeypatch, batch):
    monkeypatch.setattr(text_features, "BATCH_DOCS", batch)  # 3: the documents in batches, then joined
    docs = DOCS + ["\u0130stanbul İİ x_y __ a\u0307b", "ΣΑΣ. ΑΣ\nΣ", "\t\n", "one", "end with word", "x" * 300,
                   "Ⅻ ⅻ ½½ ٣٤ 𝔘𝔫𝔦 日本語 テキスト", "tab\tsep\u00a0nbsp\u2028line", None]
    for ngrams in ((1, 1), (2, 3), (1, 3), (3, 5)):
        b = finish(Hasher(1 << 10, ngrams).counts(docs), None, "l2")
        want = sk_text.HashingVectorizer(n_features=1 << 10, ngram_range=ngrams).transform([d or "" for d in docs])
        want.sum_duplicates()
        np.testing.assert_array_equal(b.indptr, want.indptr)
        np.testing.assert_array_equal(b.indices, want.indices)
        np.testing.assert_array_equal(b.data, want.data)
    with pytest.raises(ValueError, match="--ngrams"):
        parse_ngrams("2,1")


def test_hasher_random_unicode_text():
    """Random text over letters whose lowercasing changes length or context (dotted I, final
    sigma, ligatures), combining marks, digits, numerals and separators: the same features."""
    rng = np.random.default_rng(7)
    alphabet = list("ab AB_1\n\t.,-'") + [chr(c) for c in (0x130, 0x307, 0x3A3, 0x3C3, 0x3C2, 0xDF, 0x1E9E, 0x2160,
                                                            0xBD, 0x663, 0x1D518, 0x65E5, 0xA0, 0x2028, 0x300,
                                                            0x345, 0xFB00, 0x149, 0x1F0, 0x212A)]
    for trial in range(60):
        docs = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(rng.integers(1, 30))]
        if trial % 3 == 0:
            docs = [d.encode("ascii", "ignore").decode() for d in docs]
        for ngrams in ((1, 1), (1, 2), (2, 4)):
            b = finish(Hasher(1 << 6, ngrams).counts(docs), None, "l2")
            want = sk_text.HashingVectorizer(n_features=1 << 6, ngram_range=ngrams).transform(docs)
            want.sum_duplicates()
            assert np.array_equal(b.indptr, want.indptr) and np.array_equal(b.indices, want.indices) \
                and np.array_equal(b.data, want.data), (docs, ngrams)


def test_word_characters_are_those_of_python_re():
    """The array tokenizer's word characters: exactly the code points ``re``'s ``\\w`` matches."""
    codes = np.arange(0x110000, dtype=np.uint32)
    codes = codes[(codes < 0xD800) | (codes > 0xDFFF)]
    text = "".join(map(chr, codes.tolist()))
    want = np.zeros(len(codes), dtype=bool)
    want[[m.start() for m in re.finditer(r"(?u)\w", text)]] = True
    np.testing.assert_array_equal(word_chars(codes), want)
    sample = codes[::97]  # fewer than TABLE_MIN_CODES: the per-batch path, not the table
    assert len(sample) < text_features.TABLE_MIN_CODES <= len(codes)
    np.testing.assert_array_equal(word_chars(sample), want[::97])
    ascii_codes = np.arange(128, dtype=np.uint8)
    np.testing.assert_array_equal(word_chars(ascii_codes), want[:128])
    assert re.findall(TOKEN_PATTERN, "ab c de_f") == ["ab", "de_f"]


def test_missing_label_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"t": "x y", "l": "a"}] * 30 + [{"t": "x y", "l": None}] + [{"t": "x y", "l": "b"}] * 5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"d.jsonl line 31: the label 'l' is missing"):
        _run([path], tmp_path / "o.h5", text_column="t", label_column="l", block_bytes=100)
    path.write_text('{"t": "x", "l": "a"}\n{"t": "y", "l": "b\\ud800"}\n')  # a JSON escape of a lone surrogate
    with pytest.raises(ValueError, match=r"d.jsonl line 2: the label 'l' is not valid Unicode"):
        _run([path], tmp_path / "o.h5", text_column="t", label_column="l")
    with pytest.raises(ValueError, match=r"--text-column C and --label-column L"):
        _run([path], tmp_path / "o.h5", text_column="", label_column="l")
    assert not (tmp_path / "o.h5").exists()


def test_a_text_key_no_line_has_is_refused_but_some_missing_are_empty_documents(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"t": "xx yy", "l": "a"}, {"t": "zz", "l": "b"}] * 20
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"^no line of .*d\.jsonl has a text under 'zz' \(all 40 documents would "
                                         r"be empty\); check --text-column$"):
        _run([path], tmp_path / "o.h5", text_column="zz", label_column="l", block_bytes=100)
    assert not (tmp_path / "o.h5").exists()
    rows[3] = {"l": "b"}  # a missing key on some lines: an empty document, by design
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _run([path], tmp_path / "o.h5", text_column="t", label_column="l", block_bytes=100)
    X, y, classes, _ = _read(tmp_path / "o.h5")
    assert X.shape[0] == 40 and X[3].nnz == 0 and X.nnz > 30 and classes == ["a", "b"]
    csv = tmp_path / "d.csv"  # a CSV whose text column is empty on every row
    csv.write_text("t,l\n,a\n,b\n")
    with pytest.raises(ValueError, match=r"^no row of .*d\.csv has a text under 't' \(all 2 documents"):
        _run([csv], tmp_path / "c.h5", text_column="t", label_column="l")
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize("body", ["", "\n\n"])
def test_an_empty_jsonl_says_no_data_rows(tmp_path, body):
    path = tmp_path / "e.jsonl"
    path.write_text(body)
    with pytest.raises(ValueError, match=r"e\.jsonl has no data rows") as err:
        _run([path], tmp_path / "o.h5", text_column="t", label_column="l")
    assert "single class" not in str(err.value)
    assert not (tmp_path / "o.h5").exists()

"""The commands that make the bundled jobs' data files (``data/NAME.h5``), which are not in the
repository or the wheel: scikit-learn's sets (``import sklearn:NAME``) and the apt text corpus
(``export apt-descriptions``, then ``import text`` with the job's hashing)."""

from __future__ import annotations

import os
import shlex

#: how ``jobs/apt_sections_text.toml``'s data file is made from the exported corpus
APT_TEXT_IMPORT = ("import text {corpus} --text-column description --label-column section --ngrams 1,2 "
                   "--hash-bits 16 --out {out}")


def make_command(path: str, prog: str = "lepton-hpc data") -> str | None:
    """The shell command that makes the data file ``path`` (its folder too, when missing), when
    its name is a bundled set's; else None. ``prog`` starts each data subcommand
    (``python -m lepton_hpc.data`` also works)."""
    from .importers import SKLEARN_SETS

    stem = os.path.splitext(os.path.basename(path))[0]
    folder, q = os.path.dirname(path), shlex.quote  # paths quoted for the shell (spaces and all)
    mkdir = "" if not folder or os.path.isdir(folder) else f"mkdir -p {q(folder)} && "
    if stem in SKLEARN_SETS:
        return f"{mkdir}{prog} import sklearn:{stem} --out {q(path)}"
    if stem == "apt_text":
        corpus = os.path.join(folder, "apt.jsonl")
        return (f"{mkdir}{prog} export apt-descriptions --out {q(corpus)} && "
                f"{prog} {APT_TEXT_IMPORT.format(corpus=q(corpus), out=q(path))}")
    return None

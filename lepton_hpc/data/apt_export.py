"""``python -m lepton_hpc.data export apt-descriptions --out apt.jsonl``: a labelled text corpus
from apt's package lists (present offline on a Debian machine after ``apt-get update``).

Each package's ``Description`` (the synopsis line, and the long description where the lists
carry it) labelled by its ``Section``. The lists (``/var/lib/apt/lists/*_Packages*``) are
decompressed by suffix with a library (``.lz4``: the ``lz4`` package; ``.gz``, ``.xz``,
``.bz2``: Python's gzip, lzma, bz2) and parsed with ``python-debian``'s deb822 parser.

* The area prefix of a section is stripped: ``contrib/utils`` and ``non-free/utils`` count as
  ``utils`` (``non-free-firmware/kernel`` as ``kernel``).
* A package listed several times (several suites, several architectures) is kept once: the
  first stanza in the order of the list files' names, then their order inside a file.
* Only sections with at least ``--min-section`` packages (default 500) are kept.
* A list that does not decompress, a plain file with no ``Package:`` stanza, or an unknown
  suffix is one sentence naming the file (``UserError``); nothing is written. An empty list is
  fine; apt's ``*_Packages.diff_Index`` (pdiff indexes) are no lists and are left out.
* The records are sorted by package name; one JSON object per line,
  ``{"package": ..., "section": ..., "description": ...}``, written atomically.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import json
import lzma
import os
import zlib
from collections import Counter

from ..errors import UserError
from .atomic import write_text

APT_LISTS = "/var/lib/apt/lists"
MIN_SECTION = 500


#: the suffixes of a list file read here -> the format's name in messages ("": plain text)
_CODECS = {".lz4": "lz4", ".gz": "gzip", ".xz": "xz", ".bz2": "bz2", "": None}


def list_files(lists_dir: str = APT_LISTS) -> list[str]:
    """The Packages lists of ``lists_dir``, sorted by name (apt's ``*_Packages.diff_Index`` pdiff
    indexes, which are no package lists, left out)."""
    return sorted(p for p in glob.glob(os.path.join(lists_dir, "*_Packages*"))
                  if os.path.isfile(p) and not p.endswith(".diff_Index"))


def _suffix(path: str) -> str:
    """``.lz4`` for ``..._Packages.lz4``, ``""`` for a plain ``..._Packages``."""
    return path[path.rindex("_Packages") + len("_Packages"):]


def _decompress(path: str, raw: bytes) -> bytes:
    suffix = _suffix(path)
    if suffix not in _CODECS:
        raise UserError(f"{path}: cannot read a {suffix} list (known: plain, .lz4, .gz, .xz, .bz2); decompress "
                        f"it next to the others or point --lists at a folder without it")
    if suffix == ".lz4":
        try:
            import lz4.frame
        except ImportError:
            raise UserError("reading .lz4 apt lists needs the lz4 package; pip install 'lepton_hpc[text]'") from None
        fn = lz4.frame.decompress
    else:
        fn = {".gz": gzip.decompress, ".xz": lzma.decompress, ".bz2": bz2.decompress, "": bytes}[suffix]
    try:
        return fn(raw)
    except (RuntimeError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise UserError(f"{path}: cannot decompress it as {_CODECS[suffix]} ({exc}); the list is damaged: "
                        f"run apt-get update (as root) or point --lists at a folder without it") from None


def read_list(path: str) -> str:
    """The text of one Packages list, decompressed by its suffix."""
    with open(path, "rb") as fh:
        raw = fh.read()
    return _decompress(path, raw).decode("utf-8", "replace")


def _description(value: str) -> str:
    """The synopsis and the long description as plain text (a lone ``.`` is a blank line)."""
    lines = value.split("\n")
    body = [("" if ln.strip() == "." else ln.strip()) for ln in lines[1:]]
    return "\n".join([lines[0].strip()] + body).strip()


def section_name(section: str) -> str:
    """``contrib/utils`` -> ``utils``."""
    return section.strip().rsplit("/", 1)[-1]


def apt_records(lists_dir: str = APT_LISTS, min_section: int = MIN_SECTION) -> list[dict]:
    """The corpus: one record per package, sorted by package name."""
    try:
        from debian.deb822 import Packages
    except ImportError:
        raise UserError("export apt-descriptions needs python-debian; pip install 'lepton_hpc[text]'") from None
    files = list_files(lists_dir)
    if not files:
        raise UserError(f"no apt package lists (*_Packages*) in {lists_dir}; run apt-get update (as root)")
    seen: dict[str, dict] = {}
    for path in files:
        text, stanzas = read_list(path), 0
        for para in Packages.iter_paragraphs(io.StringIO(text), use_apt_pkg=False):
            name, section, desc = para.get("Package"), para.get("Section"), para.get("Description")
            stanzas += bool(name)
            if not name or not section or not desc or name in seen:
                continue
            seen[name] = {"package": name, "section": section_name(section), "description": _description(desc)}
        if not stanzas and text.strip():  # an empty list is a list; text without a package is none
            raise UserError(f"{path}: not an apt Packages list (none of its {len(text)} characters forms a "
                            f"'Package:' stanza); point --lists at apt's lists folder or remove the file")
    sizes = Counter(r["section"] for r in seen.values())
    return [seen[n] for n in sorted(seen) if sizes[seen[n]["section"]] >= min_section]


def export_apt(out: str, lists_dir: str = APT_LISTS, min_section: int = MIN_SECTION) -> dict:
    """Write the corpus to ``out`` (JSON Lines); returns counts per section."""
    if min_section < 1:
        raise UserError(f"--min-section must be >= 1, got {min_section}")
    if not os.path.isdir(lists_dir):
        raise UserError(f"--lists {lists_dir!r} is not a folder; give apt's lists folder (default {APT_LISTS})")
    records = apt_records(lists_dir, min_section)
    if not records:
        raise UserError(f"no section of the apt lists in {lists_dir} has {min_section} packages")
    write_text(out, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records))
    return dict(sorted(Counter(r["section"] for r in records).items()))


def export_main(argv) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m lepton_hpc.data export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["apt-descriptions"])
    p.add_argument("--out", required=True)
    p.add_argument("--lists", default=APT_LISTS, help=f"apt's lists folder (default {APT_LISTS})")
    p.add_argument("--min-section", type=int, default=MIN_SECTION)
    args = p.parse_args(argv)
    try:
        sizes = export_apt(args.out, args.lists, args.min_section)
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {sum(sizes.values())} packages in {len(sizes)} sections: "
          + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0

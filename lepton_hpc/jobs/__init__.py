"""The example jobs shipped in the package: ``lepton-hpc jobs list`` and ``jobs copy NAME [DIR]``.

The job files here are the repository's ``jobs/*.toml`` (symbolic links in the source
tree, real files in the wheel), so an installed package carries every example job.
A job whose data is a bundled set (scikit-learn's, or the apt corpus) names the command that
makes its data file; the data sets themselves are not in the wheel.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

from ..errors import UserError


def _files() -> dict[str, object]:
    root = resources.files(__name__)
    return {p.name[:-5]: p for p in sorted(root.iterdir(), key=lambda p: p.name) if p.name.endswith(".toml")}


def names() -> list[str]:
    """The names of the packaged jobs (file names without ``.toml``)."""
    return list(_files())


def text(name: str) -> str:
    """A packaged job file's text."""
    files = _files()
    key = name[:-5] if name.endswith(".toml") else name
    if key not in files:
        raise UserError(f"no packaged job named {name!r}; the jobs are: {', '.join(files)}")
    return files[key].read_text()


def summary(name: str) -> str:
    """The first sentence of the job's opening comment (what it is)."""
    words = []
    for line in text(name).splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        words += line.lstrip("#").split()
        joined = " ".join(words)
        end = re.search(r"[.!?](\s|$)", joined)
        if end:
            return joined[:end.start() + 1]
    return " ".join(words)


#: a bundled job's data line: the repository's data/ folder, seen from jobs/
_REPO_DATA = re.compile(r'^path = "\.\./data/([^"]+)".*$', re.M)


def copied_text(name: str) -> str:
    """The job as ``copy`` writes it: a bundled data file is looked for in ``data/`` next to the
    copy (``../data/`` from the repository's ``jobs/``), so that a copy into any folder keeps its
    data inside that folder."""
    return _REPO_DATA.sub(r'path = "data/\1"   # relative to this job file: its data/ folder', text(name))


def data_command(name: str, directory: str = ".") -> str | None:
    """The command that makes the data file of the job copied into ``directory``, when it is a
    bundled set (scikit-learn's, the apt corpus); a relative ``data.path`` is taken from the job
    file's directory."""
    import os

    from ..config import tomllib
    from ..data.bundled import make_command

    path = tomllib.loads(copied_text(name)).get("data", {}).get("path", "")
    return make_command(os.path.normpath(Path(directory) / path)) if path else None


def copy(name: str, directory: str = ".") -> Path:
    """Write the packaged job ``name`` into ``directory`` (made if missing); never overwrites."""
    body = copied_text(name)
    key = name[:-5] if name.endswith(".toml") else name
    target = Path(directory) / f"{key}.toml"
    blocker = next((q for q in (Path(directory), *Path(directory).parents) if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"{blocker} is a file, not a directory; give DIR as a directory to copy the job into "
                        f"(e.g. {blocker.parent / 'jobs'})")
    if target.exists():
        raise UserError(f"{target} already exists; remove it or copy into another directory")
    Path(directory).mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(body)
    tmp.replace(target)
    return target


def main(argv=None) -> int:
    from ..cli import prog

    p = argparse.ArgumentParser(prog=prog("jobs"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{list,copy}")
    sub.add_parser("list", help="list the packaged jobs with what each one is",
                   description="List the packaged example jobs.")
    c = sub.add_parser("copy", help="copy a packaged job into a directory to edit and run it",
                       description="Copy a packaged job file into DIR (default: the current directory).")
    c.add_argument("name", help="a job name from `jobs list` (with or without .toml)")
    c.add_argument("dir", nargs="?", default=".", help="target directory (made if missing; default .)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            import textwrap

            width = max(map(len, names()))
            for name in names():
                print(textwrap.fill(summary(name), 100, initial_indent=f"{name:<{width}}  ",
                                    subsequent_indent=" " * (width + 2), break_on_hyphens=False))
        else:
            target = copy(args.name, args.dir)
            print(f"wrote {target}")
            cmd = data_command(args.name, args.dir)
            if cmd:
                print(f"make its data file with: {cmd}")
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

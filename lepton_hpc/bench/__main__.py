"""``python -m lepton_hpc.bench NAME [...]``: run one benchmark (see :mod:`lepton_hpc.bench`)."""

from __future__ import annotations

import importlib
import sys

from ..errors import UserError
from . import BENCHES, __doc__ as DOC


def usage() -> str:
    from ..cli import prog

    width = max(map(len, BENCHES))
    lines = [f"usage: {prog('bench')} {{{','.join(BENCHES)}}} [options]", "",
             DOC.split("\n\n")[0], "", "benchmarks:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in BENCHES.items()]
    lines += ["", f"{prog('bench')} NAME --help shows a benchmark's options."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Dispatch to the named benchmark's ``cli``; its exit code (2: bad usage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        from ..cli import prog

        print(f"{usage()}\n\n{prog('bench')}: error: unknown benchmark {name!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[name][0])
    try:
        return module.cli(rest)
    except UserError as exc:  # e.g. no mpiexec: one sentence, not a traceback
        print(f"bench {name}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())

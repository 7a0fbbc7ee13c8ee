"""``lepton-hpc``: one command for every entry point (also ``python -m lepton_hpc``).

Each subcommand is the ``main(argv)`` of its module, called with the rest of the
command line, so ``lepton-hpc train ...`` and ``python -m lepton_hpc.train ...`` are
the same program and an option added to a module shows in both.
"""

from __future__ import annotations

import importlib
import sys

#: subcommand: (module:function taking argv and returning the exit code, one line of help)
COMMANDS = {
    "train": ("lepton_hpc.train:main", "train a model on MPI ranks (run under mpirun/srun): JOB.toml, --set, --out, "
                                       "--resume"),
    "data": ("lepton_hpc.data.__main__:main", "make, import and describe data files (synth, import, info)"),
    "evaluate": ("lepton_hpc.evaluate:main", "score a run's final checkpoint on its held-out rows or --data"),
    "predict": ("lepton_hpc.predict:main", "predictions (or top-K items) of a run for a data file, written in "
                                           "rank order"),
    "scaling": ("lepton_hpc.scaling.cli:main", "strong/weak scaling studies and the cost-model projection"),
    "bench": ("lepton_hpc.bench.__main__:main", "benchmarks whose targets are ratios measured in one run"),
    "info": ("lepton_hpc.info:main", "versions, MPI library, gradient kernel, BLAS threads, launcher"),
    "jobs": ("lepton_hpc.jobs:main", "the example jobs in the package: list, copy NAME [DIR]"),
}

#: set while ``lepton-hpc`` runs a subcommand, so its --help names the command as typed
ENTRY: str | None = None

MODULE_FORM = {"train": "python -m lepton_hpc.train", "data": "python -m lepton_hpc.data",
               "evaluate": "python -m lepton_hpc.evaluate", "predict": "python -m lepton_hpc.predict",
               "scaling": "python -m lepton_hpc.scaling", "bench": "python -m lepton_hpc.bench",
               "info": "python -m lepton_hpc.info", "jobs": "python -m lepton_hpc.jobs"}


def prog(command: str) -> str:
    """The program name a subcommand's parser shows: ``lepton-hpc train`` or ``python -m lepton_hpc.train``."""
    return f"{ENTRY} {command}" if ENTRY else MODULE_FORM[command]


def usage(name: str = "lepton-hpc") -> str:
    from . import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: {name} [--version] {{{','.join(COMMANDS)}}} ...", "",
             f"lepton_hpc {__version__}: an SPMD MPI training engine. Every command takes --help.", "",
             "commands:"]
    lines += [f"  {c:<{width}}  {text}" for c, (_, text) in COMMANDS.items()]
    lines += ["", "examples:",
              f"  mpirun -n 4 {name} train jobs/default.toml --out runs/first",
              f"  {name} train --job jobs/diabetes_linear.toml --help     # the keys and values of that job",
              f"  {name} data import csv mydata.csv --target price --out data/mine.h5",
              f"  {name} jobs copy diabetes_linear .",
              f"  {name} info"]
    return "\n".join(lines)


def main(argv=None, name: str = "lepton-hpc") -> int:
    global ENTRY
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(name), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"lepton_hpc {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"{usage(name)}\n\n{name}: error: unknown command {command!r} (choose from "
              f"{', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module, func = COMMANDS[command][0].split(":")
    ENTRY = name
    try:
        return getattr(importlib.import_module(module), func)(rest) or 0
    finally:
        ENTRY = None


def console() -> None:
    """The ``lepton-hpc`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())

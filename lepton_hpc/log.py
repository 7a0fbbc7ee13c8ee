"""The run log: the standard :mod:`logging` module, set up once per process for its rank.

Rank 0 prints every record at its level (``-q``/``-v`` move it) to stdout, one plain
line per record: no colours, no escape codes, nothing a Slurm ``--output`` file cannot
hold. Every other rank prints only warnings and errors, to stderr, prefixed with
``[rank N]`` so a log of 64 ranks says who warned. The message texts are the app's
own sentences (``step ...``, ``done: ...``, ``warning: ...``), unchanged.

Levels: ``-q`` keeps the final verdict (``RESULT``), warnings and errors; ``-qq`` only
warnings and errors; ``-v`` adds debug records and puts the time and rank in front.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "lepton_hpc"
RESULT = 25  # between INFO and WARNING: the run's final line, which -q keeps
logging.addLevelName(RESULT, "RESULT")

_MARK = "_lepton_handler"


class _Stream(logging.StreamHandler):
    """A handler on whatever ``sys.stdout``/``sys.stderr`` is when a record comes
    (``contextlib.redirect_stdout`` and pytest's capture see the log)."""

    def __init__(self, name: str):
        self._which = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self._which)

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it: the attribute above decides
        pass


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER)


def level_for(verbosity: int) -> int:
    """-qq → WARNING, -q → RESULT, default → INFO, -v → DEBUG."""
    return {-2: logging.WARNING, -1: RESULT, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0
                                                                   else logging.WARNING)


def configure(rank: int = 0, verbosity: int = 0) -> logging.Logger:
    """Install this process's one handler on the ``lepton_hpc`` logger (again: replaced, not added)."""
    log = logger()
    for h in [h for h in log.handlers if getattr(h, _MARK, False)]:
        log.removeHandler(h)
    if rank == 0:
        handler = _Stream("stdout")
        fmt = "%(asctime)s [rank 0] %(message)s" if verbosity > 0 else "%(message)s"
        log.setLevel(level_for(verbosity))
    else:
        handler = _Stream("stderr")
        fmt = ("%(asctime)s " if verbosity > 0 else "") + f"[rank {rank}] %(message)s"
        log.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%Y-%m-%d %H:%M:%S"))
    setattr(handler, _MARK, True)
    log.addHandler(handler)
    log.propagate = False
    return log


def emit(text: str, level: int | None = None) -> None:
    """Log one of the app's sentences; one starting with ``warning:`` is a warning."""
    log = logger()
    if not log.handlers:  # used as a library (estimators, tests): plain lines as before
        configure(0)
    if level is None:
        level = logging.WARNING if text.startswith("warning") else logging.INFO
    log.log(level, text)
    for h in log.handlers:
        h.flush()

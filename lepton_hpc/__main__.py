"""``python -m lepton_hpc``: the same command as ``lepton-hpc`` (see :mod:`lepton_hpc.cli`)."""

import sys

from .cli import main

sys.exit(main(name="python -m lepton_hpc"))

"""Importing a user's own code named in a job (``optimizer.name = "mypkg.halving:Halving"``)."""

from __future__ import annotations

import importlib
import os
import sys


def import_user_module(module_name: str):
    """``module_name`` imported; if it is not found, again with the current directory on the path,
    as ``python -m lepton_hpc`` has it (the ``lepton-hpc`` script's path lacks it)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or "" in sys.path or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        return importlib.import_module(module_name)

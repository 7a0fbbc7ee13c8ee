"""Tests of slurm/ on a single-node Slurm cluster (a package, so that its conftest does not shadow tests/conftest.py)."""

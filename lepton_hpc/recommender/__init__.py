"""The recommender's tooling outside the training loop: ``python -m lepton_hpc.recommender.memory``."""

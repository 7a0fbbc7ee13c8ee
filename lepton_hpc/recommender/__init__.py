"""Matrix-factorization recommender (``model.kind = "mf"``): R ~ U V^T on observed ratings.

- :mod:`.kernels`: per-chunk numerics (numpy only)
- :mod:`.dist`: item-blocked exact/fast reductions over user chunks, row gathers
- :mod:`.trainer`: :class:`~.trainer.MFTrainer`, the runner (``lepton_hpc.runners``)
- :mod:`.memory`: bytes per rank, measured and projected

Data: :mod:`lepton_hpc.data.ratings`.
"""

"""Which :class:`~lepton_hpc.engine.problem.Problem` carries out each ``model.kind``.

Adding a model kind: write the problem (``lepton_hpc/problems/``), its kernel
(``lepton_hpc/models/``) and one line here. The config's ``model.kind`` choices
are these keys. Import-light on purpose: no MPI, no numpy.
"""

PROBLEMS = {
    "linear": "lepton_hpc.problems.glm:GLMProblem",
    "logistic": "lepton_hpc.problems.glm:GLMProblem",
    "softmax": "lepton_hpc.problems.glm:GLMProblem",
    "mf": "lepton_hpc.problems.mf:MFProblem",
    "matmul": "lepton_hpc.problems.matmul:MatmulProblem",
}


def problem_class(kind: str) -> type:
    from importlib import import_module

    from ..errors import UserError

    target = PROBLEMS.get(kind)
    if target is None:
        raise UserError(f"model.kind={kind!r} has no problem in this version; available: "
                        f"{', '.join(sorted(PROBLEMS))}")
    module, name = target.split(":")
    return getattr(import_module(module), name)

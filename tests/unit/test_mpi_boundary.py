"""Structure rules of the package, checked on its source (AST, no import):

* only lepton_hpc/comm.py and lepton_hpc/reduce.py call MPI collectives or point-to-point;
* no function is 80 lines or longer, no module longer than 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[2] / "lepton_hpc"
MPI_MODULES = {"comm.py", "reduce.py"}  # relative to PACKAGE
MPI_METHODS = {
    "Allreduce", "allreduce", "Allgather", "Allgatherv", "allgather", "Bcast", "bcast",
    "Gather", "Gatherv", "gather", "Scatter", "Scatterv", "scatter", "Reduce", "reduce",
    "Iallreduce", "Alltoall", "Alltoallv", "alltoall", "Barrier", "barrier",
    "Send", "Recv", "send", "recv", "Isend", "Irecv", "Sendrecv",
}
# Also common Python/numpy/matplotlib names: counted only on a receiver that mentions comm.
AMBIGUOUS = {"reduce", "gather", "send", "scatter"}
MAX_FUNCTION_LINES = 80  # a function this long or longer fails
MAX_MODULE_LINES = 500


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def comm_module_names(tree: ast.AST) -> set:
    """Names bound to the lepton_hpc.comm module itself (``from . import comm as C``):
    ``C.barrier(comm)`` calls the wrapper, which is what the rule asks for."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] in ("", "lepton_hpc"):
            names |= {a.asname or a.name for a in node.names if a.name == "comm"}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name == "lepton_hpc.comm" and a.asname}
    return names


def mpi_calls(tree: ast.AST) -> list:
    """Sorted (line, "receiver.method") of every call that looks like an MPI collective or p2p call."""
    wrappers = comm_module_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, ast.unparse(node.func.value)
        if method not in MPI_METHODS or receiver in wrappers:
            continue
        if method in AMBIGUOUS and "comm" not in receiver.lower():
            continue
        found.append((node.lineno, f"{receiver}.{method}"))
    return sorted(found)


def long_functions(tree: ast.AST):
    """(line, name, length) of every function of MAX_FUNCTION_LINES lines or more."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length >= MAX_FUNCTION_LINES:
                yield node.lineno, node.name, length


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_scanner_finds_mpi_calls_and_skips_numpy_and_plots():
    source = "\n".join([
        "from . import comm as C", "C.barrier(comm)", "C.allgather(comm, x)",
        "comm.Allreduce(a, b)", "self.comm.bcast(x, root=0)", "MPI.COMM_WORLD.Barrier()",
        "sub_comm.gather(v)", "req = world.Isend(buf, 1)", "np.add.reduce(x)", "ax.scatter(x, y)",
        "functools.reduce(f, xs)", "sock.send(b'')", "np.sum(x)",
    ])
    found = [call for _, call in mpi_calls(ast.parse(source))]
    assert sorted(found) == sorted(["comm.Allreduce", "self.comm.bcast", "MPI.COMM_WORLD.Barrier",
                                    "sub_comm.gather", "world.Isend"])


def test_the_length_check_counts_whole_functions():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    short = "def short():\n" + "\n".join(body.splitlines()[:-1])
    assert list(long_functions(ast.parse(f"def f():\n{body}\n"))) == [(1, "f", MAX_FUNCTION_LINES)]
    assert list(long_functions(ast.parse(short))) == []


def test_only_comm_and_reduce_talk_to_mpi():
    offenders = []
    for path in modules():
        if str(path.relative_to(PACKAGE)) in MPI_MODULES:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        offenders += [f"{_rel(path)}:{line}: {call}" for line, call in mpi_calls(tree)]
    assert not offenders, (f"{len(offenders)} MPI call(s) outside lepton_hpc/comm.py and "
                           f"lepton_hpc/reduce.py (move them behind a comm wrapper):\n  "
                           + "\n  ".join(offenders))


def test_functions_and_modules_are_short():
    offenders = []
    for path in modules():
        text = path.read_text()
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            offenders.append(f"{_rel(path)}: module of {n_lines} lines (> {MAX_MODULE_LINES})")
        offenders += [f"{_rel(path)}:{line}: {name}() is {length} lines (>= {MAX_FUNCTION_LINES})"
                      for line, name, length in long_functions(ast.parse(text, filename=str(path)))]
    assert not offenders, f"{len(offenders)} too long:\n  " + "\n  ".join(offenders)

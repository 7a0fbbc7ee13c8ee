"""Every benchmark's options are checked by argparse before anything runs.

A bad value is argparse's own ``error: argument --X: ...`` line and exit 2, from the
shared types in :mod:`lepton_hpc.bench.common`. Each case runs the real command
(``python -m lepton_hpc.bench NAME ...``'s ``main``) in this process; launching a
process or starting a bench's own work in-process raises ``Started`` instead, so a
check that is missing fails fast here instead of running a benchmark.
"""

import argparse
import subprocess

import pytest

from lepton_hpc.bench import BENCHES
from lepton_hpc.bench import common
from lepton_hpc.bench.__main__ import main

pytestmark = pytest.mark.timeout(60)

MISSING = "/nonexistent/lepton-bench-args"

# bench -> {option: a bad value}; every option with a checked value, per bench
BAD = {
    "gradpass": {"--rows": "0", "--cols": "-1", "--repeats": "0"},
    "reduce": {"--rows": "-1", "--cols": "0", "--steps": "0", "--block": "-1", "--timeout": "0",
               "--mpiexec": MISSING, "--ranks": "0"},
    "ranks": {"--rows": "x", "--cols": "0", "--steps": "0", "--block": "0", "--rounds": "0", "--timeout": "-5",
              "--mpiexec": MISSING, "--reduction": "slow"},
    "matmul": {"--m": "0", "--n": "-1", "--p": "0", "--k": "-1", "--repeats": "0", "--threads": "0",
               "--seed": "-1"},
    "allreduce": {"--ranks": "1", "--min-bytes": "4", "--max-bytes": "0", "--reps": "0", "--batch-s": "-1",
                  "--timeout": "0", "--mpiexec": MISSING},
    "models": {"--rows": "0", "--cols": "0", "--steps": "0", "--rounds": "0", "--batch-size": "0",
               "--epochs": "0", "--ranks": "0", "--timeout": "0", "--mpiexec": MISSING},
    "predict": {"--rows": "-1", "--cols": "0", "--reps": "0", "--rounds": "0", "--timeout": "0",
                "--mpiexec": MISSING, "--tmp": MISSING},
    "als": {"--users": "0", "--items": "0", "--density": "1.5", "--sweeps": "0", "--ranks": "0", "--rounds": "0",
            "--reg-none": "-1", "--reg-count": "nan", "--rmse-target": "0", "--timeout": "0",
            "--mpiexec": MISSING},
    "implicit": {"--users": "0", "--items": "0", "--density": "0", "--true-rank": "0", "--factors": "0",
                 "--iterations": "0", "--reg": "-0.1", "--alpha": "-1", "--seed": "-1", "--ranks": "0",
                 "--threads": "0", "--rounds": "0", "--timeout": "0", "--mpiexec": MISSING},
    "mfshard": {"--users": "0", "--items": "0", "--density": "0", "--rank": "0", "--reg": "-1",
                "--chunk-rows": "0", "--steps": "0", "--ranks": "0", "--timeout": "0", "--mpiexec": MISSING},
    "solve": {"--rows": "0", "--cols": "0", "--softmax-cols": "0", "--classes": "1", "--reg": "-1",
              "--ranks": "0", "--rounds": "0", "--tol": "0", "--sk-tol": "inf", "--timeout": "0",
              "--mpiexec": MISSING},
    "svd": {"--sizes": "3x8", "--ranks": "0,1", "--repeats": "0", "--repeats-large": "0", "--kappa": "0.5",
            "--seed": "-1", "--timeout": "0", "--mpiexec": MISSING},
    "sparse": {"--rows": "-1", "--cols": "0", "--nnz-per-row": "0", "--chunk-rows": "0", "--repeats": "0",
               "--tmpdir": MISSING},
    "import": {"--rows": "-1", "--cols": "0", "--repeats": "0", "--ranks": "1", "--workdir": MISSING,
               "--timeout": "0", "--mpiexec": MISSING},
    "text": {"--corpus": MISSING + ".jsonl", "--hash-bits": "32", "--ngrams": "2,1", "--repeats": "0",
             "--workdir": MISSING, "--timeout": "0", "--mpiexec": MISSING},
}

# checks across options: (argv, the option the message names)
CROSS = [
    (["sparse", "--rows", "100", "--cols", "100", "--nnz-per-row", "200"], "--nnz-per-row"),
    (["allreduce", "--min-bytes", "64", "--max-bytes", "16"], "--max-bytes"),
    (["allreduce", "--min-bytes", "64", "--max-bytes", "64"], "--max-bytes"),  # one size: no line to fit
    (["matmul", "--m", "50", "--k", "100"], "rank 100"),
    (["mfshard", "--users", "3", "--items", "2", "--rank", "4"], "--rank"),
    (["implicit", "--users", "30", "--items", "5", "--factors", "6"], "--factors"),
    (["implicit", "--users", "30", "--items", "5", "--factors", "4", "--true-rank", "6"], "--true-rank"),
    (["als", "--users", "100", "--items", "5"], "--items"),
    (["gradpass", "--set", "data.chunk_rows=0"], "data.chunk_rows"),  # the jobs the options make
    (["solve", "--set", "model.bogus=1"], "model.bogus"),
]


class Started(Exception):
    """A bench got past its option checks."""


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch):
    def started(*a, **k):
        raise Started(f"a bench started: {a[:1]}")

    monkeypatch.setattr(subprocess, "Popen", started)  # every launch: mpiexec, the data generators
    for module, func in (("gradpass", "bench_gradpass"), ("matmul", "run")):  # the benches run in-process
        mod = __import__(f"lepton_hpc.bench.{module}", fromlist=[func])
        monkeypatch.setattr(mod, func, started)
    monkeypatch.setattr(common, "build", started)


def run_bad(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("bench,option,value", [(b, o, v) for b, opts in BAD.items() for o, v in opts.items()])
def test_a_bad_value_is_a_usage_error_naming_the_option(bench, option, value, capsys):
    err = run_bad([bench, option, value], capsys)
    assert f"error: argument {option}: " in err, err
    assert value in err or option == "--ngrams" or "invalid choice" in err, err


@pytest.mark.parametrize("argv,named", CROSS)
def test_options_that_contradict_each_other_are_a_usage_error(argv, named, capsys):
    err = run_bad(argv, capsys)
    assert "error: " in err and named in err, err


# options whose values are free text checked after parsing (--set by the config, --sweep and --what by the bench)
CHECKED_LATER = {"--set", "--sweep", "--what", "--dir"}


class _Captured(Exception):
    pass


def test_every_bench_and_every_option_is_covered(monkeypatch):
    assert set(BAD) == set(BENCHES)

    def catch(self, *a, **k):
        raise _Captured(self)

    for bench, (module, _) in BENCHES.items():
        with monkeypatch.context() as m:
            m.setattr(argparse.ArgumentParser, "parse_args", catch)
            with pytest.raises(_Captured) as got:
                __import__(module, fromlist=["cli"]).cli([])
        for action in got.value.args[0]._actions:
            option = action.option_strings[-1] if action.option_strings else action.dest
            if action.nargs == 0 or option in CHECKED_LATER:
                continue
            assert action.type is not None or action.choices, f"{bench} {option}: no type= that checks it"
            assert action.type is None or option in BAD[bench], f"{bench} {option}: no bad value in BAD"


@pytest.mark.parametrize("bench,folder", [("predict", "--tmp"), ("sparse", "--tmpdir"), ("import", "--workdir"),
                                          ("text", "--workdir")])
def test_nothing_is_written_before_the_checks(bench, folder, tmp_path, capsys):
    repeats = "--reps" if bench == "predict" else "--repeats"
    err = run_bad([bench, folder, str(tmp_path), repeats, "0"], capsys)
    assert f"argument {repeats}: must be an integer >= 1, got 0" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind,good,bad", [
    (common.positive_int, {"1": 1, "007": 7}, ["0", "-3", "1.5", "x", ""]),
    (common.non_negative_int, {"0": 0, "12": 12}, ["-1", "nan"]),
    (common.positive_float, {"1e-9": 1e-9, "2": 2.0}, ["0", "-1", "inf", "nan", "x"]),
    (common.non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-1e-9", "-inf", "nan"]),
    (common.fraction, {"1": 1.0, "0.01": 0.01}, ["0", "1.0001", "nan"]),
    (common.ranks_type(2), {"2": 2, "8": 8}, ["1", "0", "-2"]),
    (common.int_in(1, 31), {"1": 1, "31": 31}, ["0", "32"]),
    (common.int_list(1), {"1,2": [1, 2], "4": [4]}, ["", "0,1", "1,x"]),
])
def test_the_shared_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            kind(text)


def test_file_folder_and_program_types(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text("{}\n")
    assert common.existing_file(str(f)) == str(f)
    assert common.existing_dir(str(tmp_path)) == str(tmp_path)
    assert common.executable("sh") == "sh"
    for kind, text in ((common.existing_file, str(tmp_path)), (common.existing_file, MISSING),
                       (common.existing_dir, str(f)), (common.executable, MISSING), (common.executable, str(f))):
        with pytest.raises(argparse.ArgumentTypeError, match="no such"):
            kind(text)

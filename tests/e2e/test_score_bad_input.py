"""Bad input to ``predict`` and ``evaluate`` through real mpiexec: one sentence, exit 1, no
traceback, and nothing damaged (the input data, the checkpoints, a folder given as --out)."""

import json

import h5py
import numpy as np
import pytest
from mpirun import run_mpi
from test_rundir import one_error

TINY = ["--set", "data.rows=120", "--set", "data.cols=3", "--set", "data.chunk_rows=40", "--set", "train.tol=0",
        "--set", "train.steps=4", "--set", "checkpoint.every=2"]


def _train(out, *extra):
    proc = run_mpi(2, ["--out", out, *TINY, *extra])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _h5(path, X, y=None, names=None):
    with h5py.File(path, "w") as f:
        f["X"] = X
        if y is not None:
            f["y"] = y
        if names is not None:
            f["X"].attrs["feature_names"] = names
    return path


def _predict(run, *args):
    return run_mpi(2, [run, *map(str, args)], module="lepton_hpc.predict")


def _evaluate(run, *args):
    return run_mpi(2, [run, *map(str, args)], module="lepton_hpc.evaluate")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    where = tmp_path_factory.mktemp("runs")
    return {"lin": _train(where / "lin"), "soft": _train(where / "soft", "--set", "model.kind=softmax",
                                                         "--set", "model.classes=3"),
            "log": _train(where / "log", "--set", "model.kind=logistic"), "where": where}


def test_predict_never_writes_over_its_inputs_or_a_checkpoint(runs, tmp_path):
    data = _h5(tmp_path / "ok.h5", np.ones((10, 3)), np.zeros(10))
    before = data.read_bytes()
    step = runs["lin"] / "checkpoints" / "step-00000004.h5"
    saved = step.read_bytes()
    (tmp_path / "alias.h5").symlink_to(data)
    for out in (data, tmp_path / "alias.h5"):
        assert one_error(_predict(runs["lin"], "--data", data, "--out", out)) == \
            f"error: --out {out} is also an input file; choose another name"
    for out in (step, runs["soft"] / "checkpoints" / "new.h5"):
        err = one_error(_predict(runs["lin"], "--data", data, "--out", out))
        assert f"--out {out} is inside {out.parent.resolve()}, a run's checkpoints folder" in err, err
    assert data.read_bytes() == before and step.read_bytes() == saved
    assert not (runs["soft"] / "checkpoints" / "new.h5").exists()


def test_an_out_that_cannot_be_a_file_is_named_not_its_temporary(runs, tmp_path):
    data = _h5(tmp_path / "ok.h5", np.ones((10, 3)))
    cases = {tmp_path: f"cannot write {tmp_path}: it is a folder; give a file name",
             tmp_path / "no" / "p.h5": f"cannot write {tmp_path / 'no' / 'p.h5'}: the folder {tmp_path / 'no'} "
                                       f"does not exist (create it first)",
             "": "--out is empty; give the name of the file to write"}
    for out, want in cases.items():
        assert one_error(_predict(runs["lin"], "--data", data, "--out", out)) == f"error: {want}"
    np.save(tmp_path / "x.npy", np.ones((4, 3)))
    np.save(tmp_path / "y.npy", np.arange(4.0) / 3)
    imp = run_mpi(2, ["import", "npy", tmp_path / "x.npy", tmp_path / "y.npy", "--out", tmp_path],
                  module="lepton_hpc.data")
    assert one_error(imp) == f"error: {cases[tmp_path]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.h5", "x.npy", "y.npy"]  # no temporary left


def test_predict_refuses_nan_rows_options_of_another_model_and_another_runs_checkpoint(runs, tmp_path):
    X = np.ones((90, 3))
    X[57, 1] = np.nan  # in the second chunk of 40 rows: rank 1's
    nan = _h5(tmp_path / "nan.h5", X)
    err = one_error(_predict(runs["lin"], "--data", nan, "--out", tmp_path / "p.h5"))
    assert f"NaN or Inf at row 57 (the first bad row) in {nan}" in err, err
    ok = _h5(tmp_path / "ok.h5", np.ones((9, 3)))
    err = one_error(_predict(runs["lin"], "--data", ok, "--out", tmp_path / "p.h5", "--top-k", 3))
    assert err == f"error: --top-k applies to recommender (model.kind=mf) runs; {runs['lin']} is a linear run, " \
                  f"which predicts every row of --data (drop --top-k)"
    other = runs["soft"] / "checkpoints" / "step-00000004.h5"
    err = one_error(_predict(runs["lin"], "--data", ok, "--out", tmp_path / "p.h5", "--checkpoint", other))
    assert f"--checkpoint {other} is a softmax model (model/b (3,), model/w (3, 3)), but {runs['lin']} holds a " \
           f"linear model (model/b (), model/w (3,)); pass the run directory that checkpoint belongs to" in err, err
    assert not (tmp_path / "p.h5").exists()
    # a checkpoint of the run itself is fine
    own = runs["lin"] / "checkpoints" / "step-00000002.h5"
    proc = _predict(runs["lin"], "--data", ok, "--out", tmp_path / "p.h5", "--checkpoint", own)
    assert proc.returncode == 0 and json.loads(proc.stdout)["checkpoint"] == str(own), proc.stderr


def test_predict_and_evaluate_of_a_run_without_a_model_say_so(tmp_path):
    run = tmp_path / "mm"
    proc = run_mpi(1, ["--out", run, "--set", "model.kind=matmul", "--set", "model.rank=2", "--set", "matmul.m=16",
                       "--set", "matmul.n=16", "--set", "matmul.p=8", "--set", "matmul.repeats=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = _h5(tmp_path / "ok.h5", np.ones((9, 3)))
    assert one_error(_predict(run, "--data", data, "--out", tmp_path / "p.h5")) == \
        f"error: {run} is a model.kind=matmul run: it has no model, so nothing to predict (predict serves linear, " \
        f"logistic, softmax and mf runs)"
    assert one_error(_evaluate(run)) == \
        f"error: {run} is a model.kind=matmul run: it has no model, so nothing to evaluate (evaluate serves " \
        f"linear, logistic and softmax runs)"


def test_recommender_top_k_below_one_says_at_least_one(tmp_path):
    ratings = tmp_path / "r.h5"
    proc = run_mpi(1, ["synth", "mf", "--users", 30, "--items", 12, "--rank", 2, "--density", 0.3, "--noise", 0.1,
                       "--chunk-rows", 10, "--out", ratings], module="lepton_hpc.data")
    assert proc.returncode == 0, proc.stderr
    run = _train(tmp_path / "mf", "--set", "model.kind=mf", "--set", "model.rank=2", "--set", "train.solver=als",
                 "--set", f"data.path={ratings}", "--set", "data.chunk_rows=10")
    for k in (0, -2):
        assert one_error(_predict(run, "--top-k", k, "--out", tmp_path / "rec.h5")) == \
            f"error: --top-k must be at least 1 (how many items to recommend per user), got {k}"
    assert one_error(_predict(run, "--top-k", 2, "--out", ratings)).endswith("is also an input file; choose "
                                                                             "another name")
    assert not (tmp_path / "rec.h5").exists()


def test_evaluate_refuses_labels_the_model_does_not_know_and_nan_rows(runs, tmp_path):
    X = np.ones((90, 3))
    cases = []
    y = np.zeros(90)
    y[63] = 5  # rank 1's rows
    cases.append(("soft", y, "the target at row 63 of {p} is 5, but the model in {c} (softmax, 3 classes) "
                             "expects 0, 1 or 2"))
    y = np.zeros(90)
    y[12] = 0.5
    cases.append(("soft", y, "the target at row 12 of {p} is 0.5, but the model in {c} (softmax, 3 classes) "
                             "expects 0, 1 or 2"))
    cases.append(("log", np.arange(90.0) % 3, "the target at row 2 of {p} is 2, but the model in {c} (logistic, "
                                              "2 classes) expects 0 or 1"))
    for i, (run, y, want) in enumerate(cases):
        path = _h5(tmp_path / f"bad{i}.h5", X, y)
        err = one_error(_evaluate(runs[run], "--data", path))
        assert want.format(p=path, c=runs[run] / "checkpoints" / "step-00000004.h5") in err, err
    Xn = X.copy()
    Xn[77, 2] = np.nan
    nan = _h5(tmp_path / "nan.h5", Xn, np.zeros(90))
    err = one_error(_evaluate(runs["lin"], "--data", nan))
    assert f"NaN or Inf at row 77 (the first bad row) in {nan}" in err, err
    assert not list(runs["lin"].glob("evaluation-*.json")) and not list(runs["soft"].glob("evaluation-*.json"))


def test_evaluate_checks_feature_names_as_predict_does(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    named = _h5(tmp_path / "named.h5", X, X @ [1.0, 2.0, 3.0], names=["a", "b", "c"])
    swapped = _h5(tmp_path / "swapped.h5", X, X @ [1.0, 2.0, 3.0], names=["b", "a", "c"])
    run = _train(tmp_path / "run", "--set", f"data.path={named}")
    want = f"error: the features of {swapped} do not match the model's: feature 0 is 'b', the model expects 'a' " \
           f"(expected features: a, b, c)"
    assert one_error(_evaluate(run, "--data", swapped)) == want
    assert one_error(_predict(run, "--data", swapped, "--out", tmp_path / "p.h5")) == want
    assert _evaluate(run, "--data", named).returncode == 0


def test_evaluate_warns_of_a_torn_newest_step_and_records_the_checkpoint_it_scored(runs):
    run = runs["where"] / "torn"
    _train(run)
    newest = run / "checkpoints" / "step-00000004.h5"
    newest.write_bytes(newest.read_bytes()[:1000])
    proc = _evaluate(run)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipping checkpoint step 4: checkpoint file {newest} fails its checksum" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["checkpoint"] == str(run / "checkpoints" / "step-00000002.h5") and out["step"] == 2
    assert json.loads((run / "evaluation.json").read_text())["checkpoint"] == out["checkpoint"]

"""``lepton_hpc.load``: fitted models from real one-process runs, predictions, exports, bad inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import lepton_hpc
from lepton_hpc import checkpoint
from lepton_hpc.config import build
from lepton_hpc.errors import UserError
from lepton_hpc.fitted import LinearModel, LogisticModel, SoftmaxModel
from lepton_hpc.fitted_mf import RecommenderModel

GLM_RUNS = {
    "linear": {"model": {"kind": "linear"}},
    "logistic": {"model": {"kind": "logistic"}},
    "softmax": {"model": {"kind": "softmax", "classes": 3}},
    "softmax_std": {"model": {"kind": "softmax", "classes": 3, "standardize": True},
                    "data": {"features": "uniform"}},
}


def _run(tmp_path_factory, name, raw):
    from mpi4py import MPI

    from lepton_hpc.engine.job import run_job

    base = {"data": {"rows": 300, "cols": 4, "chunk_rows": 64, "seed": 3},
            "train": {"steps": 12, "log_every": 100, "tol": 0.0}, "checkpoint": {"every": 5, "keep": 2},
            "optimizer": {"name": "constant", "learning_rate": 0.2}}
    for section, values in raw.items():
        base[section] = {**base.get(section, {}), **values}
    out = tmp_path_factory.mktemp(name) / "run"
    code, _ = run_job(build(base, name), MPI.COMM_SELF, str(out))
    assert code == 0
    return out


@pytest.fixture(scope="module", params=list(GLM_RUNS))
def glm_run(request, tmp_path_factory):
    return request.param, _run(tmp_path_factory, request.param, GLM_RUNS[request.param])


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    raw = {"data": {"rows": 40, "cols": 15, "chunk_rows": 16, "density": 0.3, "true_rank": 2,
                    "test_fraction": 0.2},
           "model": {"kind": "mf", "rank": 2, "reg": 0.05}, "train": {"solver": "als", "steps": 4}}
    return _run(tmp_path_factory, "mf", raw)


def _arrays(run):
    snap = checkpoint.latest_local(run / "checkpoints")
    return snap, snap.replicated("model/")


def _X(n, d, seed=0):
    return np.random.default_rng(seed).uniform(-1, 2, (n, d))


def test_glm_predictions_are_the_checkpoint_arrays_bitwise(glm_run):
    kind, run = glm_run
    model = lepton_hpc.load(run)
    snap, arrays = _arrays(run)
    w, b = arrays["model/w"], arrays["model/b"]
    X = _X(50, w.shape[0])
    z = X @ w + b
    assert model.n_iter_ == snap.step == 12 and model.n_features_in_ == 4
    assert not hasattr(model, "feature_names_in_")
    assert snap.attrs["standardized"] == (kind == "softmax_std")  # weights stored in original units either way
    if kind == "linear":
        assert isinstance(model, LinearModel)
        assert np.array_equal(model.predict(X), z)
        assert model.coef_.shape == (4,) and isinstance(model.intercept_, float)
        y = z + np.random.default_rng(1).normal(size=len(z))
        assert model.score(X, y) == pytest.approx(1 - ((y - z) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    elif kind == "logistic":
        assert isinstance(model, LogisticModel)
        assert np.array_equal(model.decision_function(X), z)
        p = 1 / (1 + np.exp(-z))
        assert np.allclose(model.predict_proba(X), np.c_[1 - p, p], rtol=0, atol=1e-15)
        assert np.array_equal(model.predict(X), (z > 0).astype(int))
        assert model.coef_.shape == (1, 4) and model.intercept_.shape == (1,)
        assert model.classes_.tolist() == [0, 1]
    else:
        assert isinstance(model, SoftmaxModel)
        assert np.array_equal(model.decision_function(X), z)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        assert np.allclose(model.predict_proba(X), e / e.sum(axis=1, keepdims=True), rtol=0, atol=1e-15)
        assert np.array_equal(model.predict(X), z.argmax(axis=1))
        assert model.coef_.shape == (3, 4) and model.intercept_.shape == (3,)
        assert np.array_equal(model.coef_, w.T) and model.classes_.tolist() == [0, 1, 2]
        assert model.score(X, z.argmax(axis=1)) == 1.0


def test_a_step_file_loads_the_same_model(glm_run):
    _, run = glm_run
    snap, _ = _arrays(run)
    assert lepton_hpc.load(snap.path) == lepton_hpc.load(run)
    older = [s for s in checkpoint.list_steps(run / "checkpoints") if s < snap.step][0]
    model = lepton_hpc.load(checkpoint.main_file(run / "checkpoints", older))
    assert model.n_iter_ == older


def test_to_sklearn_agrees(glm_run):
    kind, run = glm_run
    model = lepton_hpc.load(run)
    est = model.to_sklearn()
    X = _X(80, 4, seed=2)
    assert np.allclose(est.predict(X), model.predict(X), rtol=0, atol=1e-12)
    if kind != "linear":
        assert np.array_equal(est.predict(X), model.predict(X))
        assert np.allclose(est.decision_function(X), model.decision_function(X), rtol=0, atol=1e-12)
        assert np.allclose(est.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-12)
        assert np.array_equal(est.classes_, model.classes_) and est.n_iter_.tolist() == [12]
    assert est.score(X, model.predict(X)) == model.score(X, model.predict(X))


def test_npz_round_trip(glm_run, tmp_path):
    _, run = glm_run
    model = lepton_hpc.load(run)
    model.save(tmp_path / "model.npz")
    again = lepton_hpc.load(tmp_path / "model.npz")
    assert again == model and type(again) is type(model)
    X = _X(20, 4)
    assert np.array_equal(again.predict(X), model.predict(X))
    with np.load(tmp_path / "model.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["metadata"]))
    assert meta["kind"] == model.kind and meta["lepton_hpc_version"] == lepton_hpc.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind


def test_onnx_matches(glm_run):
    pytest.importorskip("skl2onnx", reason="the onnx extra is not installed (pip install 'lepton_hpc[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    kind, run = glm_run
    model = lepton_hpc.load(run)
    onx = model.to_onnx()
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    X = _X(60, 4, seed=5)
    out = sess.run(None, {"X": X})
    if kind == "linear":
        assert np.allclose(out[0].ravel(), model.predict(X), rtol=0, atol=1e-6)
    else:
        assert np.array_equal(out[0], model.predict(X))
        assert np.allclose(out[1], model.predict_proba(X), rtol=0, atol=1e-6)


def _named():
    return LogisticModel(np.array([1.0, -2.0]), 0.5, classes=["no", "yes"], feature_names=["age", "dose"])


def test_feature_names_and_classes_are_kept(tmp_path):
    model = _named()
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert model.predict(X).tolist() == ["yes", "no"]
    est = model.to_sklearn()
    assert est.feature_names_in_.tolist() == ["age", "dose"] and est.classes_.tolist() == ["no", "yes"]
    with pytest.warns(UserWarning, match="feature names"):  # sklearn's warning for a plain array
        assert est.predict(X).tolist() == ["yes", "no"]
    model.save(tmp_path / "m.npz")
    again = lepton_hpc.load(tmp_path / "m.npz")
    assert again == model and again.feature_names_in_.tolist() == ["age", "dose"]
    with pytest.raises(UserError, match="2 classes but 3"):
        LogisticModel(np.ones(2), 0.0, classes=[0, 1, 2])


def test_a_data_frame_must_have_the_trained_columns():
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    model = _named()
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert model.predict(pd.DataFrame(X, columns=["age", "dose"])).tolist() == ["yes", "no"]
    with pytest.raises(UserError, match=r"\['dose', 'age'\]"):
        model.predict(pd.DataFrame(X, columns=["dose", "age"]))
    assert model.to_sklearn().predict(pd.DataFrame(X, columns=["age", "dose"])).tolist() == ["yes", "no"]


def test_bad_inputs_raise_user_errors(glm_run, tmp_path):
    _, run = glm_run
    model = lepton_hpc.load(run)
    with pytest.raises(UserError, match="4 feature columns"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(UserError, match="4 feature columns"):
        model.predict(np.zeros(4))
    with pytest.raises(UserError, match="numeric"):
        model.predict([["a", "b", "c", "d"]])
    named = LinearModel(np.ones(2), 0.0, feature_names=["a", "b"])
    with pytest.raises(UserError, match=r"2 feature columns \(a, b\)"):
        named.predict(np.zeros((1, 3)))


def test_load_rejects_what_is_not_a_model(glm_run, tmp_path):
    _, run = glm_run
    with pytest.raises(UserError, match="does not exist"):
        lepton_hpc.load(tmp_path / "nope")
    with pytest.raises(UserError, match="not a run directory"):
        lepton_hpc.load(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="neither"):
        lepton_hpc.load(tmp_path / "x.txt")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a model file"):
        lepton_hpc.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(UserError, match="not a model file"):
        lepton_hpc.load(tmp_path / "other.npz")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="no committed checkpoint"):
        lepton_hpc.load(tmp_path / "run")
    snap, _ = _arrays(run)
    torn = tmp_path / "step-00000099.h5"
    torn.write_bytes(snap.path.read_bytes())
    with pytest.raises(UserError, match="not a committed checkpoint"):
        lepton_hpc.load(torn)


def test_a_corrupt_step_is_a_user_error(glm_run, tmp_path):
    import shutil

    _, run = glm_run
    snap, _ = _arrays(run)
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for p in snap.directory.glob(f"step-{snap.step:08d}.*"):
        shutil.copy(p, ck / p.name)
    with open(ck / snap.path.name, "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\xff" * 8)
    with pytest.raises(UserError, match="checksum"):
        lepton_hpc.load(ck / snap.path.name)
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(UserError, match="none of the 1"):
        lepton_hpc.load(tmp_path)


# -- the recommender ----------------------------------------------------------------------

def _training_items(run):
    """Brute force: every training rating of the run, regenerated with a one-process shard."""
    from lepton_hpc.data.ratings import RatingsShard

    snap, _ = _arrays(run)
    cfg = build(__import__("tomllib").loads(snap.attrs["config"]), "run")
    shard = RatingsShard(cfg.data, 1, 0)
    seen = {u: set() for u in range(shard.n_users)}
    for b in shard.blocks:
        for u, i in zip(b.train[0], b.train[1]):
            seen[int(u) + b.user_lo].add(int(i))
    return seen


def test_recommender_predict_and_recommend_match_brute_force(mf_run):
    model = lepton_hpc.load(mf_run)
    snap, arrays = _arrays(mf_run)
    U, V = snap.rows("model/U", 0, 40), arrays["model/V"]
    assert isinstance(model, RecommenderModel) and np.array_equal(model.U, U) and np.array_equal(model.V, V)
    users, items = np.array([0, 5, 39, 17]), np.array([14, 0, 3, 3])
    assert np.array_equal(model.predict(users, items), (U[users] * V[items]).sum(axis=1))
    seen = _training_items(mf_run)
    got_items, got_scores = model.recommend(np.arange(40), k=4)
    all_items, _ = model.recommend(np.arange(40), k=4, exclude_seen=False)
    for u in range(40):
        s = U[u] @ V.T
        want = sorted((i for i in range(15) if i not in seen[u]), key=lambda i: (-s[i], i))[:4]
        assert got_items[u].tolist() == want and np.allclose(got_scores[u], s[want], rtol=0, atol=1e-12)
        assert all_items[u].tolist() == sorted(range(15), key=lambda i: (-s[i], i))[:4]


def test_recommend_breaks_ties_by_lower_item_and_pads():
    from lepton_hpc.fitted_mf import CSRRatings

    U, V = np.ones((2, 1)), np.array([[1.0], [2.0], [2.0], [1.0]])
    model = RecommenderModel(U, V, CSRRatings(np.array([0, 0, 3]), np.array([0, 1, 2])))
    items, scores = model.recommend([0, 1], k=2)
    assert items.tolist() == [[1, 2], [3, -1]] and scores[1, 1] == -np.inf


def test_recommender_npz_round_trip(mf_run, tmp_path):
    model = lepton_hpc.load(mf_run)
    model.save(tmp_path / "rec.npz")
    again = lepton_hpc.load(tmp_path / "rec.npz")
    assert again == model
    users = np.arange(40)
    assert all(np.array_equal(a, b) for a, b in zip(again.recommend(users, 3), model.recommend(users, 3)))


def test_recommender_bad_inputs(mf_run):
    model = lepton_hpc.load(mf_run)
    for call, match in ((lambda: model.predict([40], [0]), "user index 40"),
                        (lambda: model.predict([0], [15]), "item index 15"),
                        (lambda: model.predict([-1], [0]), "user index -1"),
                        (lambda: model.predict([0.5], [0]), "integers"),
                        (lambda: model.predict([0, 1], [0, 1, 2]), "same shape"),
                        (lambda: model.recommend([0], k=0), "k must be"),
                        (lambda: model.recommend([0], k=16), "k must be"),
                        (lambda: model.recommend([[0]], k=1), "1-D")):
        with pytest.raises(UserError, match=match):
            call()


def test_loading_does_not_import_mpi(glm_run, mf_run):
    _, run = glm_run
    code = (f"import sys, lepton_hpc; m = lepton_hpc.load({str(run)!r}); r = lepton_hpc.load({str(mf_run)!r}); "
            f"r.recommend([0], 2); assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(run.parent))


def test_classes_and_feature_names_come_from_the_checkpoint(tmp_path):
    from mpi4py import MPI

    from lepton_hpc.checkpoint import Part

    cfg = build({"model": {"kind": "softmax", "classes": 3}, "data": {"cols": 2}}, "named")
    parts = {"model/w": Part(np.arange(6.0).reshape(2, 3)), "model/b": Part(np.array([0.0, 1.0, -1.0]))}
    attrs = {"config": cfg.to_toml(), "model_kind": "softmax", "classes": json.dumps(["a", "b", "c"]),
             "feature_names": json.dumps(["x0", "x1"])}
    checkpoint.save(MPI.COMM_SELF, tmp_path / "checkpoints", 4, parts, attrs, keep=1)
    model = lepton_hpc.load(tmp_path)
    assert model.classes_.tolist() == ["a", "b", "c"] and model.feature_names_in_.tolist() == ["x0", "x1"]
    assert model.predict(np.array([[1.0, 0.0], [0.0, -1.0]])).tolist() == ["b", "a"]  # z = [0, 2, 1], [-3, -3, -6]
    with pytest.raises(UserError, match=r"2 feature columns \(x0, x1\)"):
        model.predict(np.zeros((1, 3)))
    X, codes = np.array([[1.0, 0.0], [0.0, -1.0]]), np.array([1.0, 0.0])  # as a data file's /y holds them
    assert model.score(X, model.classes_[codes.astype(int)]) == 1.0
    with pytest.raises(UserError, match=r"y holds numbers but the model's classes are labels \('a', 'b', 'c'\); "
                                        r"a data file's /y holds their codes: score with model.classes_"):
        model.score(X, codes)  # not a silent accuracy of 0


def test_nan_inf_and_none_in_X_are_refused_naming_the_row(glm_run):
    _, run = glm_run
    model = lepton_hpc.load(run)
    X = _X(6, 4)
    X[3, 2] = np.nan
    methods = ["predict"] + [m for m in ("predict_proba", "decision_function") if hasattr(model, m)]
    for method in methods:
        with pytest.raises(UserError, match="NaN or Inf at row 3 "):
            getattr(model, method)(X)
    X[3, 2], X[5, 0] = 0.0, -np.inf
    with pytest.raises(UserError, match="row 5 "):
        model.predict(X)
    with pytest.raises(UserError, match="row 0 "):
        model.predict(np.array([[None, 1.0, 2.0, 3.0]], dtype=object))
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X[5, 0] = np.inf
    with pytest.raises(UserError, match="row 5 "):
        model.predict(scipy_sparse.csr_matrix(X))
    with pytest.raises(ValueError):  # UserError is a ValueError, scikit-learn's convention
        model.score(X, model.predict(np.nan_to_num(X, posinf=0.0)))


def test_score_needs_one_label_per_row(glm_run):
    _, run = glm_run
    model = lepton_hpc.load(run)
    X = _X(12, 4)
    y = model.predict(X)
    with pytest.raises(UserError, match="X has 12 rows but y has 10"):
        model.score(X, y[:10])
    with pytest.raises(UserError, match="X has 12 rows but sample_weight has 3"):
        model.score(X, y, sample_weight=np.ones(3))
    assert model.score(X, y) == 1.0


def test_save_appends_npz_and_returns_the_path(glm_run, mf_run, tmp_path):
    _, run = glm_run
    for model in (lepton_hpc.load(run), lepton_hpc.load(mf_run)):
        written = model.save(tmp_path / "bcnoext")
        assert written == tmp_path / "bcnoext.npz" and written.is_file()
        assert not (tmp_path / "bcnoext").exists() and lepton_hpc.load(written) == model
        assert model.save(str(tmp_path / "m.v2")) == tmp_path / "m.v2.npz"
        assert model.save(tmp_path / "kept.npz") == tmp_path / "kept.npz"
        with pytest.raises(UserError, match="file name"):
            model.save(None)


def test_load_of_not_a_path_is_a_user_error():
    for bad in (None, 3, ["runs/bc"]):
        with pytest.raises(UserError, match="needs a path"):
            lepton_hpc.load(bad)

"""The input checks shared by predict and evaluate (lepton_hpc.score_inputs), without MPI."""

import numpy as np
import pytest
import scipy.sparse as sp

from lepton_hpc.errors import UserError
from lepton_hpc.score_inputs import (check_feature_names, check_out, first_bad_label, first_bad_row,
                                     label_expectation)


def test_first_bad_row_dense_csr_and_targets():
    X = np.ones((6, 3))
    assert first_bad_row(X) is None
    X[4, 1], X[2, 2] = np.inf, np.nan
    assert first_bad_row(X) == 2
    assert first_bad_row(sp.csr_matrix(X)) == 2
    y = np.zeros(6)
    y[1] = np.nan
    assert first_bad_row(np.ones((6, 3)), y) == 1


def test_labels_are_the_models_classes():
    assert first_bad_label("logistic", np.array([0.0, 1, 1, 2]), 1) == 3
    assert first_bad_label("softmax", np.array([0.0, 2, 1.5]), 3) == 2
    assert first_bad_label("softmax", np.array([0.0, 2, -1]), 3) == 2
    assert first_bad_label("softmax", np.array([0.0, 2, 1]), 3) is None
    assert [label_expectation("logistic", 1), label_expectation("softmax", 3), label_expectation("softmax", 10)] \
        == ["0 or 1", "0, 1 or 2", "an integer class 0, 1, ..., 8, 9"]


def test_feature_names_in_the_models_order():
    check_feature_names(["a", "b"], ["a", "b"], "f.h5")
    check_feature_names(None, ["a", "b"], "f.h5")
    with pytest.raises(UserError, match="feature 1 is 'c', the model expects 'b'"):
        check_feature_names(["a", "c"], ["a", "b"], "f.h5")
    with pytest.raises(UserError, match="feature 2 is 'missing'"):
        check_feature_names(["a", "b"], ["a", "b", "c"], "f.h5")


def test_out_is_no_input_and_no_checkpoint(tmp_path):
    data = tmp_path / "d.h5"
    data.write_bytes(b"x")
    (tmp_path / "hard.h5").hardlink_to(data)
    check_out(str(tmp_path / "p.h5"), [str(data), None])
    for out in (data, tmp_path / "hard.h5"):
        with pytest.raises(UserError, match="is also an input file"):
            check_out(str(out), [str(data)])
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "step-00000001.commit").write_text("{}")
    with pytest.raises(UserError, match="a run's checkpoints folder"):
        check_out(str(ck / "p.h5"), [])

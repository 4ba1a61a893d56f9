"""Metrics against independent implementations (scipy, scikit-learn) and hand-computed values."""
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from eqgat import metrics as M


@pytest.fixture(params=[0, 1, 2])
def rng(request):
    return np.random.default_rng(request.param)


def test_mse_rmse_mae_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    y = np.array([[0.0, 2.0], [3.0, 2.0]])
    assert M.mse(pred, y) == pytest.approx((1 + 0 + 0 + 9) / 4)
    assert M.rmse(pred, y) == pytest.approx(np.sqrt(2.5))
    assert M.mae(pred, y) == pytest.approx(1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        M.mse(np.zeros(3), np.zeros(4))


def test_rankdata_matches_scipy_with_ties(rng):
    x = rng.integers(0, 5, size=40).astype(float)
    np.testing.assert_array_equal(M.rankdata(x), stats.rankdata(x))


def test_correlations_match_scipy(rng):
    x = rng.normal(size=60)
    y = 0.5 * x + rng.normal(size=60)
    y[::7] = y[0]  # ties
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    xr = np.round(x, 1)
    assert M.kendall_tau_b(xr, y) == pytest.approx(stats.kendalltau(xr, y)[0], abs=1e-12)


def test_correlation_of_constant_is_nan():
    assert np.isnan(M.pearson(np.ones(5), np.arange(5.0)))
    assert np.isnan(M.spearman(np.arange(1.0), np.arange(1.0)))


def test_per_group_mean_by_hand():
    # group a: perfectly ranked (1.0), group b: reversed (-1.0), group c: only 2 members (left out)
    pred = np.array([1, 2, 3, 3, 2, 1, 5, 6], dtype=float)
    y = np.array([1, 2, 3, 1, 2, 3, 1, 2], dtype=float)
    groups = ["a", "a", "a", "b", "b", "b", "c", "c"]
    mean, used, skipped = M.per_group_mean(M.spearman, pred, y, groups, min_size=3)
    assert (mean, used, skipped) == (0.0, 2, 1)


def test_accuracy_from_logits_and_labels():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert M.accuracy(logits, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert M.accuracy(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_roc_auc_and_ap_match_sklearn(rng):
    label = rng.integers(0, 2, size=80)
    score = label * 0.7 + rng.normal(size=80)
    score[::5] = 0.25  # tied scores
    assert M.roc_auc(score, label) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    assert M.average_precision(score, label) == pytest.approx(average_precision_score(label, score), abs=1e-12)


def test_roc_auc_by_hand():
    # positives 0.8, 0.4; negatives 0.5, 0.1 -> 3 of 4 pairs ordered correctly
    assert M.roc_auc(np.array([0.8, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.75)
    assert np.isnan(M.roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_ranking_task_metrics_by_target():
    from eqgat.tasks import get_task

    # target A ranked perfectly, target B reversed, target C has only 2 decoys (left out);
    # the target is a per-graph column of the shards, not parsed out of the id
    columns = {"target": ["A", "A", "A", "B", "B", "B", "C/x", "C/x"], "decoy": list("abcdefgh")}
    y = np.array([1, 2, 3, 1, 2, 3, 5, 6], dtype=float)
    pred = np.array([1, 2, 3, 3, 2, 1, 6, 5], dtype=float)
    out = get_task("psr").evaluate(pred[:, None], y[:, None], columns)
    assert out["mean_spearman"] == pytest.approx(0.0)
    assert (out["per_target_used"], out["per_target_skipped"]) == (2, 1)
    assert out["global_spearman"] == pytest.approx(stats.spearmanr(pred, y)[0])
    assert out["global_kendall"] == pytest.approx(stats.kendalltau(pred, y)[0])
    assert out["mse"] == pytest.approx(np.mean((pred - y) ** 2)) and out["rmse"] == pytest.approx(np.sqrt(out["mse"]))
    assert get_task("rsr").evaluate(pred[:, None], y[:, None], columns) == out


def test_classification_and_interface_task_metrics():
    from eqgat.tasks import get_task

    logits = np.eye(20)[[3, 5, 7]]
    assert get_task("res").evaluate(logits, np.array([3, 5, 0]), {})["accuracy"] == pytest.approx(2 / 3)
    out = get_task("ppi").evaluate(np.array([[0.8], [0.4], [0.5], [0.1]]), np.array([1, 1, 0, 0]), {})
    assert out["roc_auc"] == pytest.approx(0.75)
    assert out["average_precision"] == pytest.approx(average_precision_score([1, 1, 0, 0], [0.8, 0.4, 0.5, 0.1]))

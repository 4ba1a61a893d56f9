"""Training losses by name, against hand computations."""
import math

import pytest
import torch

from eqgat.tasks import TASKS
from eqgat.tasks.losses import LOSSES, batch_pearson, get_loss, pearson_mse


def test_rsr_loss_by_hand():
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    # Pearson: deviations p = (-4/3, -1/3, 5/3), t = (-1, 1, 0)
    # sum p*t = 4/3 - 1/3 = 1; sum p^2 = 16/9 + 1/9 + 25/9 = 42/9; sum t^2 = 2
    r = 1.0 / math.sqrt(42 / 9 * 2)
    mse = (0 + 1 + 4) / 3
    assert float(batch_pearson(pred, y)) == pytest.approx(r, rel=1e-6)
    assert float(pearson_mse(pred, y)) == pytest.approx(0.8 * (1 - r) + 0.2 * mse, rel=1e-6)


def test_rsr_loss_without_a_correlation_is_finite():
    """Constant labels (or predictions, or a batch of one) have no Pearson correlation: it
    counts as 0, the loss stays finite and so do its gradients (the authors' formula gives NaN)."""
    for pred, y in (([[1.0], [2.0], [3.0]], [[2.0], [2.0], [2.0]]),
                    ([[5.0], [5.0]], [[1.0], [3.0]]),
                    ([[1.5]], [[0.5]])):
        pred = torch.tensor(pred, requires_grad=True)
        y = torch.tensor(y)
        loss = pearson_mse(pred, y)
        mse = float(((pred - y) ** 2).mean())
        assert float(loss) == pytest.approx(0.8 + 0.2 * mse)
        loss.backward()
        assert torch.isfinite(pred.grad).all()
        # the gradient is the MSE part's alone
        torch.testing.assert_close(pred.grad, 0.2 * 2 * (pred - y).detach() / len(y))


def test_perfect_correlation_leaves_the_mse_part():
    pred = torch.tensor([1.0, 2.0, 3.0])
    y = 2 * pred + 1
    assert float(pearson_mse(pred, y)) == pytest.approx(0.2 * float(((pred - y) ** 2).mean()), abs=1e-6)


def test_the_other_losses():
    pred = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    y = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    assert float(get_loss("mse")(pred, y)) == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.e / (1 + math.e))) / 2
    assert float(get_loss("cross_entropy")(logits, torch.tensor([0, 1]))) == pytest.approx(expected)
    z = torch.tensor([[0.3], [-1.2]])
    sig = 1 / (1 + torch.exp(-z.view(-1)))
    expected = -float((torch.log(sig[0]) + torch.log(1 - sig[1])) / 2)
    assert float(get_loss("bce")(z, torch.tensor([1, 0]))) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        get_loss("l1")


def test_tasks_declare_their_losses():
    assert {name: t.loss_names for name, t in TASKS.items()} == {
        "triangle": ("mse",), "lba": ("mse",), "psr": ("mse",), "rsr": ("mse", "pearson_mse"),
        "res": ("cross_entropy",), "ppi": ("bce",), "structures": ("mse", "cross_entropy")}
    assert TASKS["rsr"].protocol["train"]["loss"] == "pearson_mse"
    assert all(name in LOSSES for t in TASKS.values() for name in t.loss_names)

"""benchmarks/authors_shims.py (the torch_scatter stand-in for the authors' code) computes what
torch_geometric.utils.scatter / softmax compute, with torch_scatter's argument conventions."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.utils import scatter as pyg_scatter
from torch_geometric.utils import softmax as pyg_softmax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import authors_shims as S  # noqa: E402


def _data(shape: tuple[int, ...], segments: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(shape, generator=g, dtype=torch.float64)
    # segment 1 left empty on purpose: the shim must give zeros there, as both libraries do
    index = torch.randint(0, segments, (shape[0],), generator=g)
    index[index == 1] = 0
    return src, index


@pytest.mark.parametrize("shape", [(50,), (50, 7), (50, 3, 4)])
@pytest.mark.parametrize("reduce", ["sum", "add", "mean", "max", "min"])
def test_scatter_equals_pyg(shape: tuple[int, ...], reduce: str) -> None:
    src, index = _data(shape, 9, seed=len(shape))
    expected = pyg_scatter(src, index, dim=0, dim_size=11, reduce="sum" if reduce == "add" else reduce)
    got = S.scatter(src, index, dim=0, dim_size=11, reduce=reduce)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.all(got[[1, 9, 10]] == 0)  # empty segments (and those past index.max())


def test_named_functions_and_default_dim() -> None:
    src, index = _data((40, 5), 6, seed=3)
    torch.testing.assert_close(S.scatter_add(src, index, dim=0), pyg_scatter(src, index, 0, reduce="sum"))
    torch.testing.assert_close(S.scatter_sum(src, index, dim=0, dim_size=8),
                               pyg_scatter(src, index, 0, dim_size=8, reduce="sum"))
    torch.testing.assert_close(S.scatter_mean(src, index, dim=0, dim_size=8),
                               pyg_scatter(src, index, 0, dim_size=8, reduce="mean"))
    # torch_scatter's default dim is -1 (their gvp.py relies on it)
    ones, dst = torch.ones(30, dtype=torch.float64), torch.randint(0, 4, (30,))
    torch.testing.assert_close(S.scatter_add(ones, dst, dim_size=5), pyg_scatter(ones, dst, 0, 5, reduce="sum"))
    # an index of src's shape, along the last dimension
    idx2 = torch.randint(0, 3, (4, 6))
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.zeros(4, 3, dtype=torch.float64).scatter_add_(1, idx2, x)
    torch.testing.assert_close(S.scatter(x, idx2, dim=-1, dim_size=3), expected)


@pytest.mark.parametrize("shape", [(60,), (60, 8), (60, 3, 5)])
def test_softmax_equals_pyg_values_and_gradients(shape: tuple[int, ...]) -> None:
    src, index = _data(shape, 7, seed=10 + len(shape))
    src = (5 * src).requires_grad_(True)
    ref = src.detach().clone().requires_grad_(True)
    got = S.scatter_softmax(src, index, dim=0, dim_size=7)
    expected = pyg_softmax(ref, index, num_nodes=7, dim=0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    w = torch.randn(shape, dtype=torch.float64)
    (got * w).sum().backward()
    (expected * w).sum().backward()
    torch.testing.assert_close(src.grad, ref.grad, rtol=1e-8, atol=1e-10)


def test_install_registers_modules() -> None:
    before = {k: sys.modules.get(k) for k in ("torch_scatter", "torch_scatter.composite")}
    if before["torch_scatter"] is not None and not getattr(before["torch_scatter"], "__shim__", False):
        pytest.skip("a real torch_scatter is installed here")
    try:
        mod = S.install()
        from torch_scatter import scatter, scatter_mean  # type: ignore[import-not-found]
        from torch_scatter.composite import scatter_softmax  # type: ignore[import-not-found]

        assert mod.__shim__ and scatter is S.scatter and scatter_mean is S.scatter_mean
        assert scatter_softmax is S.scatter_softmax
        assert S.install() is mod  # idempotent
        import torch_geometric.typing

        assert not torch_geometric.typing.WITH_TORCH_SCATTER  # PyG did not pick the shim up
    finally:
        for key, value in before.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def test_out_argument_is_refused() -> None:
    src, index = _data((10,), 3, seed=0)
    with pytest.raises(NotImplementedError):
        S.scatter(src, index, dim=0, out=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError):
        S.scatter(src, index, dim=0, reduce="mul")

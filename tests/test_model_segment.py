"""Edge sums used by the EQGAT layer: exact against index_add, also for half-precision inputs."""
import torch

from eqgat.nn.segment import Adjacency, gather, scatter_sum


def reference_sum(x, index, num_nodes):
    return torch.zeros((num_nodes,) + x.shape[1:], dtype=x.dtype).index_add_(0, index, x)


def test_scatter_sum_and_gather_match_index_ops_with_gradients():
    torch.manual_seed(0)
    index = torch.randint(0, 7, (40,))
    x = torch.randn(40, 3, 5, dtype=torch.float64, requires_grad=True)
    adj = Adjacency(index, 7)
    out = scatter_sum(x, adj)
    torch.testing.assert_close(out, reference_sum(x.detach(), index, 7), rtol=0, atol=1e-12)
    nodes = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(gather(nodes, adj), nodes.detach()[index], rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda t: scatter_sum(t, adj), (x,))
    assert torch.autograd.gradcheck(lambda t: gather(t, adj), (nodes,))


def test_half_precision_sums_accumulate_in_float32():
    torch.manual_seed(1)
    index = torch.randint(0, 3, (500,))
    x = torch.randn(500, 8).to(torch.bfloat16)
    out = scatter_sum(x, Adjacency(index, 3))
    assert out.dtype == torch.bfloat16
    expected = reference_sum(x.float(), index, 3).to(torch.bfloat16)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_sums_under_autocast_stay_float32():
    """Autocast would cast the sparse product's operands to bfloat16 (on the CPU there is no
    such kernel: an error; on CUDA a bfloat16 sum): float32 edges are summed in float32, and
    bfloat16 edges accumulate in float32 as without autocast."""
    torch.manual_seed(2)
    index = torch.randint(0, 3, (500,))
    x = 1 + 1e-3 * torch.randn(500, 8)  # bfloat16 keeps ~3 digits: its sum would be visibly off
    adj = Adjacency(index, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = scatter_sum(x, adj)
        half = scatter_sum(x.to(torch.bfloat16), adj)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference_sum(x, index, 3), rtol=1e-6, atol=0)
    torch.testing.assert_close(half, reference_sum(x.to(torch.bfloat16).float(), index, 3).to(torch.bfloat16),
                               rtol=0, atol=0)


def test_csr_rows_match_brute_force_with_empty_nodes_sorted_and_unsorted():
    """Row pointers: crow[n] = number of edges pointing at nodes < n, for indices that leave the
    first and last nodes empty, already sorted or not, int64 or int32; no edges at all."""
    index = torch.tensor([5, 2, 2, 4, 2, 5])  # nodes 0, 1, 3, 6, 7 get no edge
    for idx in (index, index.sort().values, index.to(torch.int32)):
        adj = Adjacency(idx, 8)
        expected = torch.tensor([int((idx < n).sum()) for n in range(9)])
        assert torch.equal(adj.crow.long(), expected)
        x = torch.arange(6 * 2, dtype=torch.float64).reshape(6, 2)
        torch.testing.assert_close(adj.sum(x), reference_sum(x, idx.long(), 8), rtol=0, atol=0)
    empty = Adjacency(torch.zeros(0, dtype=torch.long), 4)
    assert torch.equal(empty.crow, torch.zeros(5, dtype=torch.long))
    assert torch.equal(scatter_sum(torch.zeros(0, 3), empty), torch.zeros(4, 3))

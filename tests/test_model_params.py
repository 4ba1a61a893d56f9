"""Parameter counts: paper configurations, exact formula, ablations."""

import pytest

from eqgat.configs import PAPER_CONFIGS, PAPER_PARAM_COUNTS, count_parameters, main
from eqgat.models import build_model


def lin(i, o, bias=True):
    return i * o + (o if bias else 0)


def expected_count(num_elements, hidden_scalars, hidden_vectors, num_layers, num_radial, out_dim,
                   readout, cross_product=True, feature_attention=True, norm=True, **_):
    Fs, Fv, K = hidden_scalars, hidden_vectors, num_radial
    A = Fs if feature_attention else 1
    total = num_elements * Fs  # embedding
    for layer in range(num_layers):
        first = layer == 0
        n_coeff = 1 if first else (3 if cross_product else 2)
        total += lin(2 * Fs + K, Fs) + lin(Fs, A + n_coeff * Fv)  # edge MLP
        total += lin(Fs, Fs)  # W_s
        total += 0 if first else lin(Fv, Fv, bias=False)  # W_v
        total += lin(Fv, 2 * Fv, False) + lin(Fs + Fv, Fs) + lin(Fs, Fv + Fs) + lin(Fv, Fv, False)  # update
        total += 2 * Fs if norm else 0
    total += 2 * Fs if norm else 0  # the norm before the readout
    total += lin(Fv, Fv, False) + lin(Fs + Fv, Fs)  # W_q, W_r
    head_in = 2 * Fs if readout == "pair" else Fs
    total += lin(head_in, Fs) + lin(Fs, out_dim)
    return total


# the lead's hand calculation
EXACT = {"lba": 237_933, "psr": 384_709, "rsr": 384_709, "res": 386_628, "ppi": 394_709, "triangle": 27_411}


@pytest.mark.parametrize("task", sorted(PAPER_CONFIGS))
def test_paper_config_counts(task):
    cfg = PAPER_CONFIGS[task]
    n = count_parameters(build_model("eqgat", **cfg))
    assert n == expected_count(**cfg) == EXACT[task]
    if task in PAPER_PARAM_COUNTS:
        assert abs(n - PAPER_PARAM_COUNTS[task]) / PAPER_PARAM_COUNTS[task] < 0.005


def test_paper_configs_content():
    assert set(PAPER_CONFIGS) == {"lba", "psr", "rsr", "res", "ppi", "triangle"}
    assert set(PAPER_PARAM_COUNTS) == {"lba", "psr", "rsr", "res", "triangle"}
    for task, cfg in PAPER_CONFIGS.items():
        atom3d = task != "triangle"
        assert cfg["vector_aggr"] == ("mean" if atom3d else "sum")
        assert cfg["num_elements"] == (9 if atom3d else 2)
    assert PAPER_CONFIGS["res"]["readout"] == "node" and PAPER_CONFIGS["res"]["out_dim"] == 20
    assert PAPER_CONFIGS["ppi"]["readout"] == "pair"
    assert PAPER_CONFIGS["triangle"]["out_dim"] == 3 and PAPER_CONFIGS["lba"]["num_layers"] == 3


@pytest.mark.parametrize("task", ["psr", "triangle"])
def test_ablation_counts(task):
    cfg = PAPER_CONFIGS[task]
    L, Fs, Fv = cfg["num_layers"], cfg["hidden_scalars"], cfg["hidden_vectors"]
    full = count_parameters(build_model("eqgat", **cfg))
    noatt = count_parameters(build_model("eqgat_noatt", **cfg))
    nocross = count_parameters(build_model("eqgat_nocross", **cfg))
    nonorm = count_parameters(build_model("eqgat", **cfg, norm=False))
    # one logit instead of Fs per edge: W2 loses (Fs - 1) outputs (weights + biases) per layer
    assert full - noatt == L * (Fs - 1) * (Fs + 1)
    # no cross product: W2 of every layer but the first loses the Fv coefficients b2
    assert full - nocross == (L - 1) * Fv * (Fs + 1)
    assert full - nonorm == (L + 1) * 2 * Fs
    assert noatt == expected_count(**cfg, feature_attention=False)
    assert nocross == expected_count(**cfg, cross_product=False)


def test_configs_main_prints_table(capsys):
    main([])
    out = capsys.readouterr().out
    assert "384,709" in out and "383,000" in out and "+0.45%" in out
    assert "27,411" in out and "+0.04%" in out
    assert "ppi" in out

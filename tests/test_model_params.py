"""Parameter counts: paper configurations, exact formula, ablations."""

import pytest

from eqgat.models import build_model, count_parameters, task_model_hparams
from eqgat.paper import AUTHORS_EQGAT_PARAMS, PAPER_EQGAT_PARAMS
from eqgat.params import param_rows, print_param_table
from eqgat.tasks import TASKS


def paper_config(task: str) -> dict:
    """EQGAT's hyper-parameters as the paper protocol builds them for a task."""
    return task_model_hparams(TASKS[task], "eqgat", TASKS[task].protocol["graph"]["cutoff"])


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


# the authors' models as their scripts build them (norm after every layer and before the
# readout, none for LBA), counted by hand from their code
EXACT = {"lba": 237_933, "psr": 384_709, "rsr": 384_709, "res": 386_628, "ppi": 394_709, "triangle": 27_411}


PAPER_TASKS = sorted(AUTHORS_EQGAT_PARAMS)  # the paper's tasks (users' structures are not one)


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_paper_config_counts(task):
    cfg = paper_config(task)
    n = count_parameters(build_model("eqgat", **cfg))
    assert n == expected_count(**cfg) == EXACT[task] == AUTHORS_EQGAT_PARAMS[task]
    if task in PAPER_EQGAT_PARAMS:  # the paper rounds (and prints PSR/RSR's count without the norm)
        assert abs(n - PAPER_EQGAT_PARAMS[task]) / PAPER_EQGAT_PARAMS[task] < 0.005


def test_norm_comes_from_the_task_protocol_and_config_can_override_it():
    """The authors train LBA without a norm and every other task with one."""
    assert {t: paper_config(t)["norm"] for t in TASKS} == {t: t != "lba" for t in TASKS}  # structures: PSR's
    lba_with_norm = task_model_hparams(TASKS["lba"], "eqgat", 4.5, {"norm": True})
    assert count_parameters(build_model("eqgat", **lba_with_norm)) == EXACT["lba"] + 4 * 2 * 100
    psr_without = task_model_hparams(TASKS["psr"], "eqgat", 4.5, {"norm": False})
    assert count_parameters(build_model("eqgat", **psr_without)) == 383_509  # the paper's "383k"


def test_paper_configs_content():
    assert set(TASKS) == {"lba", "psr", "rsr", "res", "ppi", "triangle", "structures"}
    for task in TASKS:
        cfg = paper_config(task)
        atom3d = task != "triangle"
        assert cfg["vector_aggr"] == ("mean" if atom3d else "sum")
        assert cfg["num_elements"] == (9 if atom3d else 2)
        assert cfg["cutoff"] == (4.5 if atom3d else 10.0)
    assert paper_config("res")["readout"] == "node" and paper_config("res")["out_dim"] == 20
    assert paper_config("ppi")["readout"] == "pair"
    assert paper_config("triangle")["out_dim"] == 3 and paper_config("lba")["num_layers"] == 3


@pytest.mark.parametrize("task", ["psr", "triangle"])
def test_ablation_counts(task):
    cfg = paper_config(task)
    L, Fs, Fv = cfg["num_layers"], cfg["hidden_scalars"], cfg["hidden_vectors"]
    full = count_parameters(build_model("eqgat", **cfg))
    noatt = count_parameters(build_model("eqgat_noatt", **cfg))
    nocross = count_parameters(build_model("eqgat_nocross", **cfg))
    nonorm = count_parameters(build_model("eqgat", **{**cfg, "norm": False}))
    # one logit instead of Fs per edge: W2 loses (Fs - 1) outputs (weights + biases) per layer
    assert full - noatt == L * (Fs - 1) * (Fs + 1)
    # no cross product: W2 of every layer but the first loses the Fv coefficients b2
    assert full - nocross == (L - 1) * Fv * (Fs + 1)
    assert full - nonorm == (L + 1) * 2 * Fs
    assert noatt == expected_count(**cfg, feature_attention=False)
    assert nocross == expected_count(**cfg, cross_product=False)


def test_params_table(capsys):
    rows = {task: (ours, authors) for task, ours, authors, _ in param_rows("eqgat")}
    assert rows == {**{task: (EXACT[task], EXACT[task]) for task in PAPER_TASKS}, "structures": (EXACT["psr"], None)}
    print_param_table(["eqgat", "schnet"])
    out = capsys.readouterr().out
    assert "384,709" in out and "383,000" in out and "394,709" in out and "27,411" in out
    assert "16,483" in out  # SchNet on Triangle keeps its own count


def test_model_classes_document_every_argument():
    """EQGAT, its layer and the baselines list each constructor argument under ``Args:``."""
    import inspect

    from eqgat.models import EQGAT, PaiNN, SchNet
    from eqgat.models.segnn import SEGNN
    from eqgat.nn import EQGATConv

    for cls in (EQGAT, EQGATConv, PaiNN, SchNet, SEGNN):
        doc = inspect.getdoc(cls) or ""
        assert "\nArgs:\n" in doc, cls.__name__
        args = doc.split("\nArgs:\n", 1)[1]
        documented = {line.split()[0] for line in args.splitlines() if line.startswith("    ") and not line.startswith("     ")}
        expected = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert documented == expected, (cls.__name__, sorted(expected ^ documented))

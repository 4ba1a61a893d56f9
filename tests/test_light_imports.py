"""Parsing the workflow and starting a graph-building worker load no torch, torch_geometric,
gemmi or pandas (nor Numba, when no kernel runs): each check runs in a fresh interpreter."""
from __future__ import annotations

import functools
import json
import pickle
import re
import subprocess
import sys

from workflow_helpers import REPO

HEAVY = ("torch", "torch_geometric", "gemmi", "pandas")


def loaded_after(code: str, stdin: bytes = b"") -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `code`."""
    probe = code + "\nimport sys\nprint('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    line = next(ln for ln in proc.stdout.decode().splitlines() if ln.startswith("MODULES "))
    return set(line.split()[1:])


def common_smk_imports() -> str:
    """The Python imports at the top of workflow/rules/common.smk (what every parse runs)."""
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    return "\n".join(ln for ln in text.splitlines() if re.match(r"(from \S+ )?import ", ln))


def test_parsing_the_workflow_loads_no_heavy_library():
    """What common.smk and the rules do at parse time for the paper's config: validate it (the
    schema names every model), list the downloads, hash every stage's sources."""
    code = common_smk_imports() + """
import copy, yaml
from eqgat.tasks.config import deep_merge
config = deep_merge(yaml.safe_load(open("config/config.yaml")), yaml.safe_load(open("config/paper.yaml")))
validate_config(config)
assert "eqgat" in MODELS
damaged_shards("no/such/graphs")
for name, declared in archives().items():
    archives_json(declared), download_minutes(declared)
for task in config["tasks"]:
    if TASKS[task].source.kind == "download":
        TASKS[task].source.dataset(config[task])
    for stage in ("graphs", "train", "evaluate", "aggregate"):
        stage_code_version(stage, task)
stage_code_version("generate"), stage_code_version("predict")
"""
    loaded = loaded_after(code)
    assert {"eqgat", "preprocess", "snakemake"} <= loaded  # the probe ran what it should
    assert not loaded & {*HEAVY, "numba"}, sorted(loaded & {*HEAVY, "numba"})


def test_a_graph_building_worker_loads_no_heavy_library(tmp_path):
    """A Dask worker unpickles `run_shard_task` and each task's block maker: the reader route
    (PSR, users' structures) and the Triangle's own; the readers' libraries and the Triangle
    generator's kernels wait until records are read or clouds generated."""
    from eqgat.tasks import TASKS
    from preprocess.task_shards import GraphSettings, make_sample_block

    makers = [functools.partial(make_sample_block, source=TASKS[name].source, reader=TASKS[name].reader,
                                fields=TASKS[name].fields, graphs=GraphSettings(4.5), strict=False, options={})
              for name in ("psr", "structures", "ppi")]
    makers.append(TASKS["triangle"].source.block_maker(tmp_path / "clouds.h5", cutoff=10.0))
    code = """
import pickle, sys
from preprocess.build import run_shard_task
makers = pickle.loads(sys.stdin.buffer.read())
assert [m.keywords.get("reader") is not None for m in makers] == [True, True, True, False]
assert "preprocess.triangle_kernels" not in sys.modules
"""
    loaded = loaded_after(code, pickle.dumps(makers))
    assert "preprocess" in loaded and "eqgat" not in loaded  # the declarations stay behind
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_reader_reference_loads_its_module_when_called():
    """The declared reader is the reader: calling the reference runs the function it names."""
    from eqgat.tasks import TASKS
    from preprocess.readers import ranking

    ref = TASKS["psr"].reader
    assert ref.resolve() is ranking.psr_samples
    assert ref.file() == ranking.__file__
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert json.dumps([ref.module, ref.name]) == '["preprocess.readers.ranking", "psr_samples"]'


def test_a_real_dry_run_of_the_paper_config_loads_no_torch():
    """`snakemake -n` itself, every rule file and every parameter function evaluated for the
    paper's 242 jobs: no torch, torch_geometric or gemmi (Snakemake's own SLURM plugin loads
    pandas). Before: the predict rule's file listing imported eqgat.predict, and torch with it."""
    code = ("from snakemake.cli import main\n"
            "try:\n"
            "    main(['-n', 'all', '--configfile', 'config/paper.yaml', '--quiet', 'all'])\n"
            "except SystemExit as exc:\n"
            "    assert not exc.code, exc.code\n")
    assert not loaded_after(code) & {"torch", "torch_geometric", "gemmi"}

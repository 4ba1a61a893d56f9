"""Code versions: which edits change a stage's hash (and so rerun it), and which do not."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eqgat.provenance import SOURCE_ROOT, code_version, stage_files
from eqgat.tasks import TASKS


@pytest.fixture()
def sources(tmp_path) -> Path:
    """A copy of the two packages, safe to edit."""
    for package in ("eqgat", "preprocess"):
        shutil.copytree(SOURCE_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


TASK_STAGES = [(stage, task) for stage in ("graphs", "train", "evaluate", "aggregate") for task in TASKS]


def versions(root: Path) -> dict:
    return {(stage, task): code_version(stage, task, root=root) for stage, task in TASK_STAGES} | \
        {(stage, None): code_version(stage, root=root) for stage in ("generate", "predict")}


def test_a_copy_has_the_same_versions(sources):
    assert versions(sources) == versions(SOURCE_ROOT)


def changed_by(sources: Path, path: str) -> set:
    before = versions(sources)
    with open(sources / path, "a") as f:
        f.write("\n# edited\n")
    after = versions(sources)
    return {key for key in before if after[key] != before[key]}


def test_an_edit_changes_exactly_the_stages_that_run_the_file(sources):
    assert changed_by(sources, "eqgat/models/painn.py") == \
        {(s, t) for s in ("train", "evaluate") for t in TASKS} | {("predict", None)}


def test_a_task_edit_reruns_that_task_only(sources):
    """A task's declaration belongs to its own stages (and to those of a task drawing on it: RSR
    takes its fields and metrics from PSR's module); its reader to its graphs."""
    stages = ("graphs", "train", "evaluate", "aggregate")
    assert changed_by(sources, "eqgat/tasks/res.py") == {(s, "res") for s in stages}
    assert changed_by(sources, "eqgat/tasks/psr.py") == {(s, t) for s in stages for t in ("psr", "rsr")}
    # the ranking reader serves PSR and RSR; only their graphs are rebuilt
    assert changed_by(sources, "preprocess/readers/ranking.py") == {("graphs", "psr"), ("graphs", "rsr")}
    assert changed_by(sources, "preprocess/readers/res.py") == {("graphs", "res")}
    assert changed_by(sources, "preprocess/triangle.py") == {("graphs", "triangle"), ("generate", None)}
    assert changed_by(sources, "eqgat/predict.py") == {("predict", None)}
    assert changed_by(sources, "eqgat/plots.py") == {("aggregate", t) for t in TASKS}


def test_a_new_file_in_a_stage_folder_counts(sources):
    before = code_version("train", "psr", root=sources)
    (sources / "eqgat" / "nn" / "new_layer.py").write_text("X = 1\n")
    assert code_version("train", "psr", root=sources) != before
    assert sources / "eqgat" / "nn" / "new_layer.py" in stage_files("train", sources)


def test_moving_code_between_files_changes_the_version(sources):
    """The hash covers paths as well as contents."""
    a, b = sources / "eqgat" / "nn" / "a_extra.py", sources / "eqgat" / "nn" / "b_extra.py"
    a.write_text("X = 1\n")
    first = code_version("train", root=sources)
    a.rename(b)
    assert code_version("train", root=sources) != first


def test_unknown_stage_task_and_missing_source_are_named(sources):
    with pytest.raises(KeyError, match="'trian'.*train"):
        code_version("trian", root=sources)
    with pytest.raises(ValueError, match="unknown task 'pssr'"):
        code_version("train", "pssr", root=sources)
    (sources / "eqgat" / "paper.py").unlink()
    with pytest.raises(FileNotFoundError, match="paper.py.*'aggregate'"):
        code_version("aggregate", root=sources)
    (sources / "eqgat" / "tasks" / "res.py").unlink()
    with pytest.raises(FileNotFoundError, match="res.py.*task 'res'"):
        code_version("train", "res", root=sources)

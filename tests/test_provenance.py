"""Code versions: which edits change a stage's hash (and so rerun it), and which do not."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eqgat.provenance import SOURCE_ROOT, STAGE_SOURCES, code_version, stage_files


@pytest.fixture()
def sources(tmp_path) -> Path:
    """A copy of the two packages, safe to edit."""
    for package in ("eqgat", "preprocess"):
        shutil.copytree(SOURCE_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_copy_has_the_same_versions(sources):
    for stage in STAGE_SOURCES:
        assert code_version(stage, sources) == code_version(stage)


def test_an_edit_changes_exactly_the_stages_that_run_the_file(sources):
    before = {stage: code_version(stage, sources) for stage in STAGE_SOURCES}
    with open(sources / "eqgat" / "models" / "painn.py", "a") as f:
        f.write("\n# edited\n")
    changed = {stage for stage in STAGE_SOURCES if code_version(stage, sources) != before[stage]}
    assert changed == {"train", "evaluate"}


def test_a_new_file_in_a_stage_folder_counts(sources):
    before = code_version("graphs_atom3d", sources)
    (sources / "preprocess" / "readers" / "new_task.py").write_text("X = 1\n")
    assert code_version("graphs_atom3d", sources) != before
    assert sources / "preprocess" / "readers" / "new_task.py" in stage_files("graphs_atom3d", sources)


def test_moving_code_between_files_changes_the_version(sources):
    """The hash covers paths as well as contents."""
    a, b = sources / "eqgat" / "nn" / "a_extra.py", sources / "eqgat" / "nn" / "b_extra.py"
    a.write_text("X = 1\n")
    first = code_version("train", sources)
    a.rename(b)
    assert code_version("train", sources) != first


def test_unknown_stage_and_missing_source_are_named(sources):
    with pytest.raises(KeyError, match="'trian'.*train"):
        code_version("trian", sources)
    (sources / "eqgat" / "metrics.py").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.py.*'aggregate'"):
        code_version("aggregate", sources)

import shutil
import sys
from pathlib import Path

import pytest

# test helper modules (workflow_helpers, _graphs, cli_runner) live beside the tests
sys.path.insert(0, str(Path(__file__).parent))

from workflow_helpers import TINY_CONFIG, copy_repo, snakemake, write_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> tuple[Path, Path]:
    """(workdir, configfile): a copy of the repository with the tiny Triangle workflow
    (TINY_CONFIG: seeds 0 and 1) run to completion once per session. Tests only read it, or
    plan on it with dry runs; a test that changes results takes `tiny_workflow_copy`."""
    workdir = copy_repo(tmp_path_factory.mktemp("tiny_workflow"))
    configfile = write_config(workdir, TINY_CONFIG)
    snakemake(workdir, "all", "--cores", "2", "--configfile", str(configfile))
    return workdir, configfile


@pytest.fixture
def tiny_workflow_copy(tiny_workflow, tmp_path) -> tuple[Path, Path]:
    """A private copy of the finished tiny workflow (files, modification times and Snakemake's
    records), which the test may change."""
    workdir, configfile = tiny_workflow
    copy = tmp_path / "workflow"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy, copy / configfile.relative_to(workdir)

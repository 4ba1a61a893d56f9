import shutil
import sys
from pathlib import Path

import pytest

# test helper modules (workflow_helpers, _graphs, cli_runner) live beside the tests
sys.path.insert(0, str(Path(__file__).parent))

from workflow_helpers import TINY_CONFIG, copy_repo, snakemake, write_config  # noqa: E402

#: modules that mostly wait (a real SLURM scheduling 1-minute jobs): collected first, so that
#: pytest-xdist's one-module-per-worker scheduling overlaps their waits with the other
#: worker's tests instead of leaving them for the end (about 500 s instead of 560 s on 2 cores)
STARTED_FIRST = ("tests/test_slurm.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in STARTED_FIRST)  # stable: order kept otherwise


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

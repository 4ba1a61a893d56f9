"""The README's set-up commands are the ones CI runs."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv .venv")]


def test_ci_runs_the_readme_test_command():
    readme = command_lines((REPO / "README.md").read_text())
    ci = command_lines((REPO / ".ci" / "run").read_text())
    assert len(ci) == 1 and ci[0].endswith("python -m pytest")
    assert ci[0] in readme


def test_readme_main_command_runs_the_default_workflow():
    (main,) = [c for c in command_lines((REPO / "README.md").read_text()) if "snakemake" in c]
    assert main.endswith("snakemake --cores all all")
    assert "-c constraints.txt" in main

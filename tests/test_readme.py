"""The README's set-up commands are the ones CI runs."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = " --configfile .ci/tiny.yaml"


def command_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv .venv")]


def readme_commands() -> tuple[str, str]:
    """(main command, test command) of the README's quick start."""
    lines = command_lines((REPO / "README.md").read_text())
    (main,) = [c for c in lines if "snakemake" in c]
    (tests,) = [c for c in lines if c.endswith("python -m pytest")]
    return main, tests


def test_ci_runs_the_readme_commands_user_install_first():
    """CI runs the main command (the user's install, without test extras) on a tiny config first,
    then the report, then the test command, each verbatim from the README."""
    main, tests = readme_commands()
    ci_text = (REPO / ".ci" / "run").read_text()
    ci = command_lines(ci_text)
    assert ci == [main + CI_CONFIG, tests]
    assert ".[test]" not in main and "-e ." in main
    assert ci_text.index("snakemake --report") < ci_text.index(tests)


def test_readme_main_command_runs_the_default_workflow():
    main, _ = readme_commands()
    assert main.endswith("snakemake --cores all all")
    assert "-c constraints.txt" in main


def test_report_needs_nothing_beyond_the_user_install():
    """`snakemake --report` needs pygments: a dependency of the package, not only of the tests."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("pygments") for dep in project["dependencies"])

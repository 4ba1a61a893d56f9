"""Run the project's command lines in this process: `python -m eqgat ...` without paying for a
fresh interpreter (torch and PyTorch Geometric imports) on every call. Tests that are about a
separate process (signals, kills, memory limits, the workflow) still start one."""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

ENTRY_POINTS = {"eqgat": ("eqgat.cli", "main"), "eqgat.tasks": ("eqgat.tasks", "preprocess_main")}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_module(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in-process: its exit code, its stdout, and its stderr with the
    log records it emitted (as the command's own logging set-up would print them)."""
    entry_module, entry = ENTRY_POINTS[module]
    main = getattr(importlib.import_module(entry_module), entry)
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    level, handlers, threads = root.level, root.handlers[:], _torch_threads()
    # the command's log goes to its own stderr only: other handlers (pytest's, or one that an
    # earlier in-process `basicConfig(force=True)` left on a since-closed stream) are set aside
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        with _working_dir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse errors, explicit exits
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # an uncaught error: what the interpreter would print, exit 1
                traceback.print_exc()
                code = 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        _restore_torch_threads(threads)
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], int(code or 0), out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _working_dir(cwd: Path | None):
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_torch_threads(threads: int | None) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None:
        torch.set_num_threads(threads)

"""Atomic outputs get the modes that plain open()/mkdir would give under the process umask
(not mkstemp's 0600 / mkdtemp's 0700, which would hide results from a project group)."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import io, json, os, stat, sys, tarfile
    from pathlib import Path
    os.umask(int(sys.argv[2], 8))
    from preprocess.atomic import atomic_write_bytes, write_json_atomic
    from preprocess.download.extract import extract
    out = Path(sys.argv[1])
    atomic_write_bytes(out / "a.bin", b"x")
    write_json_atomic(out / "b.json", {"k": 1})
    with tarfile.open(out / "t.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("data/f.txt"); info.size = 2; info.mode = 0o644
        tf.addfile(info, io.BytesIO(b"hi"))
    extract(out / "t.tar.gz", out / "extracted")
    modes = {p: stat.S_IMODE(os.stat(out / p).st_mode) for p in ("a.bin", "b.json", "extracted")}
    print(json.dumps(modes))
""")


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750), (0o077, 0o600, 0o700)])
def test_atomic_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), oct(umask)[2:]],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    modes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert modes == {"a.bin": file_mode, "b.json": file_mode, "extracted": dir_mode}

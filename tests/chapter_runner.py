"""Run a chapter script as a student would (a subprocess, from another working directory),
in --quick mode, writing figures to a temporary directory; return what it printed."""
import os
import subprocess
import sys
from pathlib import Path

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def run_chapter(name, tmp_path, *extra):
    """Run chapters/<name> --quick --figures-dir tmp_path/figures from tmp_path; return stdout.
    Fails the test with the chapter's stderr if it exits non-zero."""
    figures = tmp_path / "figures"
    # one BLAS thread, as chapters/run_all.py uses: small matrices run faster without hand-offs
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, str(CHAPTERS / name), "--quick", "--figures-dir", str(figures), *extra],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout

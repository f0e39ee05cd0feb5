"""Run every chapter in order, as `python chapters/run_all.py [--quick] [--figures-dir DIR] [--seed N]`.

Each chapter runs in its own process (as a student would run it), with the same flags; the
wall time of each is printed at the end. Stops at the first chapter that fails.

A chapter runs exactly as it would if you started it yourself: no settings are added (tinyflow
itself asks for one BLAS thread, see tinyflow/threads.py).
"""
import subprocess
import sys
import time
from pathlib import Path

CHAPTERS = sorted(Path(__file__).resolve().parent.glob("ch[0-9][0-9]_*.py"))


def main(flags):
    times = []
    for chapter in CHAPTERS:
        print(f"\n{'=' * 30} {chapter.name} {'=' * 30}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(chapter), *flags])
        times.append((chapter.name, time.perf_counter() - start))
        if result.returncode != 0:
            sys.exit(f"{chapter.name} failed with exit code {result.returncode}")
    print("\nchapter wall times:")
    for name, seconds in times:
        print(f"  {name:32s} {seconds:6.1f} s")
    print(f"  {'total':32s} {sum(s for _, s in times):6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

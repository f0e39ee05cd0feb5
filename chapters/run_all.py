"""Run every chapter in order, as `python chapters/run_all.py [--quick] [--figures-dir DIR] [--seed N]`.

Each chapter runs in its own process (as a student would run it), with the same flags; the
wall time of each is printed at the end. Stops at the first chapter that fails.

Two settings of the process, each only if you have not set it yourself (see README, "Speed"):
  OPENBLAS_NUM_THREADS=1  these matrices are small (batch x 64), and on 2 cores a second BLAS
                          thread costs more in hand-offs than it saves;
  MALLOC_TOP_PAD_=64 MiB  glibc keeps 64 MiB of freed memory instead of returning it to the
                          system after every training step, only to page-fault it back in on
                          the next (about 1900 page faults, 5-6 ms, per 16-block coupling step).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

ENV = {"OPENBLAS_NUM_THREADS": "1", "MALLOC_TOP_PAD_": str(64 * 2 ** 20), **os.environ}
CHAPTERS = sorted(Path(__file__).resolve().parent.glob("ch[0-9][0-9]_*.py"))


def main(flags):
    times = []
    for chapter in CHAPTERS:
        print(f"\n{'=' * 30} {chapter.name} {'=' * 30}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(chapter), *flags], env=ENV)
        times.append((chapter.name, time.perf_counter() - start))
        if result.returncode != 0:
            sys.exit(f"{chapter.name} failed with exit code {result.returncode}")
    print("\nchapter wall times:")
    for name, seconds in times:
        print(f"  {name:32s} {seconds:6.1f} s")
    print(f"  {'total':32s} {sum(s for _, s in times):6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

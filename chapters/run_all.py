"""Run every chapter, as `python chapters/run_all.py [--jobs N] [--quick] [--figures-dir DIR] [--seed N]`.

Each chapter runs in its own process, exactly as a student would run it, with the same flags
(tinyflow itself asks for one BLAS thread, see tinyflow/threads.py). --jobs N runs N chapters at
once (default: one per core). Each chapter's output is printed whole, in chapter order, as soon
as it and the chapters before it have finished; the end is a table of each chapter's wall and
CPU time and of its claims that fell outside what the text states in this run (tinyflow.claims).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tinyflow.claims import parse

CHAPTERS = sorted(Path(__file__).resolve().parent.glob("ch[0-9][0-9]_*.py"))


def run(chapter, flags=(), env=None):
    """Run one chapter script in its own process: (return code, stdout, stderr, wall s, CPU s)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(chapter), *flags], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)          # wait4: this child's own CPU time
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read(), err.read(), wall, usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chapters at once (default: cores)")
    args, flags = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    start, rows, failed = time.perf_counter(), [], []
    with ThreadPoolExecutor(args.jobs) as pool:
        for chapter, future in [(c, pool.submit(run, c, flags)) for c in CHAPTERS]:
            code, out, err, wall, cpu = future.result()       # in chapter order, each as it is ready
            print(f"\n{'=' * 30} {chapter.name} {'=' * 30}\n{out}", end="", flush=True)
            if code != 0:
                print(err, file=sys.stderr, end="", flush=True)
                failed.append(chapter.name)
            found = [c for c in map(parse, out.splitlines()) if c]
            rows.append((chapter.name, wall, cpu, len(found), sum(c["flagged"] for c in found), code))
    print(f"\n{'chapter':32s} {'wall s':>7s} {'CPU s':>7s} {'claims':>7s} {'outside':>8s}")
    for name, wall, cpu, count, flagged, code in rows:
        print(f"{name:32s} {wall:7.1f} {cpu:7.1f} {count:7d} {flagged:8d}" + ("  FAILED" if code else ""))
    print(f"{'total':32s} {time.perf_counter() - start:7.1f} {sum(r[2] for r in rows):7.1f} "
          f"{sum(r[3] for r in rows):7d} {sum(r[4] for r in rows):8d}   (wall: the whole run, {args.jobs} at once)")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

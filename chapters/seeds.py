"""Re-measure a chapter's claims over seeds: `python chapters/seeds.py ch05 [ch03 ...] [--seeds 0-4]`.

Every number a chapter's text states about a training run is the range measured over seeds 0-4,
and the chapter prints its own value beside it (tinyflow.claims). This script runs the chapter
once per seed, each in its own process and with its figures sent to a temporary directory, reads
those lines back and tabulates them: one row per claim, one column per run, the measured
min and max, and whether the range the text states covers them.

Where the CPU has AVX-512, numpy computes exp, log and friends with other kernels than on a CPU
without it; the last-bit differences send training down another path. `--cpus both` (the default
on such a CPU) runs every seed twice, with those kernels on and off (NPY_DISABLE_CPU_FEATURES),
so one machine measures both kinds of CPU: ten trajectories for seeds 0-4.

Options: --jobs N runs N chapters at once (timing claims then read high), --quick for a smoke
test of the script itself, --json PATH to keep the table.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the line tinyflow.claims prints: "label: value (text: low to high over seeds 0-4)..."
CLAIM = re.compile(r"^(?P<label>.+?): (?P<value>\S+) \(text(?:, full run)?: (?P<low>\S+) to (?P<high>\S+) "
                   r"over seeds 0-4")
AVX512_OFF = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def number(text):
    """A printed number back to a float ("0.0183", "41.2%", "nan")."""
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def seed_list(text):
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2,5" -> [0, 2, 5]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def chapter_path(name):
    matches = sorted(HERE.glob(f"{name}*.py")) if not name.endswith(".py") else [HERE / name]
    if len(matches) != 1 or not matches[0].exists():
        sys.exit(f"no single chapter matches {name!r} in {HERE} (found {[m.name for m in matches]})")
    return matches[0]


def run_once(chapter, seed, cpu, quick):
    """Run the chapter with --seed; return (claims {label: (value, low, high, printed)}, seconds)."""
    env = {**os.environ, **(AVX512_OFF if cpu == "avx512 off" else {})}
    with tempfile.TemporaryDirectory() as figures:
        command = [sys.executable, str(chapter), "--seed", str(seed), "--figures-dir", figures]
        start = time.perf_counter()
        result = subprocess.run(command + (["--quick"] if quick else []), env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{chapter.name} --seed {seed} ({cpu}) failed:\n{result.stderr[-3000:]}")
    print(f"  {chapter.name} --seed {seed} ({cpu}): {seconds:.0f} s", file=sys.stderr, flush=True)
    found = {}
    for line in result.stdout.splitlines():
        match = CLAIM.match(line)
        if match:
            found[match["label"]] = (number(match["value"]), number(match["low"]), number(match["high"]),
                                     match["value"])
    return found, seconds


def tabulate(chapter, runs):
    """Print one row per claim: each run's value, min and max, the text's range, and a verdict."""
    labels = list(dict.fromkeys(label for found, _ in runs.values() for label in found))
    names = list(runs)
    width = max([len(label) for label in labels] + [5])
    print(f"\n{chapter.name}: {len(names)} runs ({', '.join(names)})")
    print(f"{'claim':{width}s} " + " ".join(f"{n:>8s}" for n in names) +
          f" {'min':>8s} {'max':>8s}  text range")
    rows = []
    for label in labels:
        cells = [runs[n][0].get(label) for n in names]
        values = [c[0] for c in cells if c is not None]
        low, high = cells[0][1:3] if cells[0] else next(c for c in cells if c)[1:3]
        covered = all(low <= v <= high for v in values) and len(values) == len(names)
        printed = " ".join(f"{c[3] if c else '-':>8s}" for c in cells)
        print(f"{label:{width}s} {printed} {min(values):8.4g} {max(values):8.4g}  {low:.4g} to {high:.4g}"
              f"{'' if covered else '  <-- the text does not cover every run'}")
        rows.append({"claim": label, "values": dict(zip(names, [c[0] if c else None for c in cells])),
                     "min": min(values), "max": max(values), "text": [low, high], "covered": covered})
    times = ", ".join(f"{runs[n][1]:.0f}" for n in names)
    print(f"wall time per run, s: {times}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+", help="chapter names or prefixes, e.g. ch05")
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,2,7 (default 0-4)")
    parser.add_argument("--cpus", choices=["both", "native"], default="both",
                        help="with AVX-512, also run with numpy's AVX-512 kernels off (default both)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1: timings stay true)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to the chapters")
    parser.add_argument("--json", metavar="PATH", help="also write the tables as JSON")
    args = parser.parse_args(argv)
    cpus = ["avx512 on", "avx512 off"] if args.cpus == "both" and has_avx512() else ["native"]
    if args.cpus == "both" and not has_avx512():
        print("this CPU has no AVX-512: each seed runs once, with numpy's native kernels")
    tables = {}
    for name in args.chapters:
        chapter = chapter_path(name)
        cases = [(seed, cpu) for cpu in cpus for seed in seed_list(args.seeds)]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda case: run_once(chapter, *case, args.quick), cases))
        # column names: s0 (native kernels), or s0/on and s0/off (AVX-512 kernels on and off)
        runs = {f"s{seed}{'' if cpu == 'native' else '/' + cpu.split()[1]}": result
                for (seed, cpu), result in zip(cases, results)}
        tables[chapter.name] = tabulate(chapter, runs)
    if args.json:
        Path(args.json).write_text(json.dumps(tables, indent=1))
        print(f"wrote {args.json}")
    return tables


if __name__ == "__main__":
    main()

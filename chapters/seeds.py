"""Set and check a chapter's claims over seeds: `python chapters/seeds.py [ch05 ...] --seeds 0-19`.

A chapter prints every trained result beside the claim its text makes (tinyflow.claims: a bound,
a range, a frequency or an exact identity). This script runs chapters once per seed, each run in
its own process with its figures sent to a temporary directory, reads those lines back and
tabulates them, one row per claim and one column per run.

Setting claims (seeds 0-19): each row also shows what the rule in tinyflow/claims.py gives for
the values measured (a bound: worst + spread / 2; a range: spread / 4 beyond each end; both
rounded outward at the first significant digit of that margin) and whether that is still informative (a bound within
1.5x the worst value, a range within 1.5x the spread); a frequency row counts the runs that said
yes.

Checking claims (--check, on seeds not used to set them, e.g. 20-29): the share of values that
fall outside what the text states, per chapter and in total, and for each frequency claim the
chance of seeing at least that many "no" runs if the stated frequency is right (one-sided
binomial, with a rate of no of at least 1 / (2 * runs) so that "20 of 20" allows a rare no); a
chance below 1% fails it.

Options: --jobs N (runs at once; default 2), --cpus both (with AVX-512: also run every seed with
numpy's AVX-512 kernels off, NPY_DISABLE_CPU_FEATURES, a CPU without them), --quick (a smoke test
of this script), --json PATH (keep every run's claims) and --load PATH ... (tabulate saved runs
instead of running, merged in order).
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from run_all import CHAPTERS, run
from tinyflow.claims import parse

HERE = Path(__file__).resolve().parent
AVX512_OFF = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


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
    matches = [c for c in CHAPTERS if c.name.startswith(name)]
    if len(matches) != 1:
        sys.exit(f"no single chapter matches {name!r} in {HERE} (found {[m.name for m in matches]})")
    return matches[0]


def run_once(chapter, seed, cpu, quick):
    """Run the chapter with --seed: {"claims": {label: parsed line}, "wall": s, "cpu": s}."""
    env = {**os.environ, **(AVX512_OFF if cpu == "off" else {})}
    with tempfile.TemporaryDirectory() as figures:
        flags = ["--seed", str(seed), "--figures-dir", figures] + (["--quick"] if quick else [])
        code, out, err, wall, cpu_seconds = run(chapter, flags, env)
    if code != 0:
        sys.exit(f"{chapter.name} --seed {seed} (AVX-512 {cpu}) failed:\n{err[-3000:]}")
    print(f"  {chapter.name} --seed {seed}{'' if cpu == 'native' else ' AVX-512 ' + cpu}: "
          f"{wall:.0f} s wall, {cpu_seconds:.0f} s CPU", file=sys.stderr, flush=True)
    found = {c["label"]: c for c in map(parse, out.splitlines()) if c}
    return {"claims": found, "wall": wall, "cpu": cpu_seconds}


def round_out(value, margin, up):
    """value rounded outward (up towards +inf, or down) to the first significant digit of margin."""
    if margin <= 0 or not math.isfinite(value):
        return value
    quantum = 10.0 ** math.floor(math.log10(margin) + 1e-9)     # 0.00099999 is 1e-3
    steps = value / quantum
    steps = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
    return float(f"{steps * quantum:.12g}")


def suggest(claim, values):
    """What the rule gives for these values: (text, informative?)."""
    low, high = min(values), max(values)
    spread = high - low
    if claim["kind"] == "bound" and "at_most" in claim:
        limit = round_out(high + spread / 2, spread / 2, up=True)
        return f"at most {limit:.4g}", not (high > 0 and limit > 1.5 * high * (1 + 1e-9))
    if claim["kind"] == "bound":
        limit = round_out(low - spread / 2, spread / 2, up=False)
        return f"at least {limit:.4g}", not (low > 0 and (limit <= 0 or low > 1.5 * limit * (1 + 1e-9)))
    if claim["kind"] == "range":
        new_low = round_out(low - spread / 4, spread / 4, up=False)
        new_high = round_out(high + spread / 4, spread / 4, up=True)
        return f"{new_low:.4g} to {new_high:.4g}", spread == 0 or (new_high - new_low) <= 2 * spread
    return "", True


def stated(claim):
    if claim["kind"] == "bound":
        return f"at most {claim['at_most']:.4g}" if "at_most" in claim else f"at least {claim['at_least']:.4g}"
    if claim["kind"] == "range":
        return f"{claim['low']:.4g} to {claim['high']:.4g}"
    if claim["kind"] == "exact":
        return f"{claim['expected']:g} within {claim['tol']:g}"
    return f"on {claim['runs']} of {claim['of']} runs"


def binomial_tail(no, runs, rate):
    """P(at least `no` of `runs` say no) when each says no with probability `rate`."""
    return sum(math.comb(runs, k) * rate ** k * (1 - rate) ** (runs - k) for k in range(no, runs + 1))


def tabulate(name, runs):
    """One row per claim: kind, each run's value, min / median / max, the text's claim, the runs it
    misses, and what the rule suggests. Returns (values printed, values flagged, frequency failures)."""
    labels = list(dict.fromkeys(label for r in runs.values() for label in r["claims"]))
    columns = list(runs)
    width = max([len(label) for label in labels] + [5])
    print(f"\n{name}: {len(columns)} runs ({', '.join(columns)})")
    printed = flagged = failures = 0
    for label in labels:
        cells = [runs[c]["claims"].get(label) for c in columns]
        first = next(c for c in cells if c)
        present = [c for c in cells if c]
        if first["kind"] == "frequency":
            yes = sum(c["happened"] for c in present)
            rate = max((first["of"] - first["runs"]) / first["of"], 1 / (2 * first["of"]))
            chance = binomial_tail(len(present) - yes, len(present), rate)
            failures += chance < 0.01
            row = " ".join(f"{'yes' if c and c['happened'] else '-' if not c else 'no':>8s}" for c in cells)
            print(f"{label:{width}s} {row}  yes on {yes} of {len(present)} (text: {stated(first)}; "
                  f"chance of this many no: {chance:.1%}{'  <-- FAILS' if chance < 0.01 else ''})")
            continue
        values = [c["value"] for c in present]
        misses = sum(c["flagged"] for c in present)
        printed, flagged = printed + len(present), flagged + misses
        rule, informative = suggest(first, values)
        row = " ".join(f"{c['shown'] if c else '-':>8s}" for c in cells)
        print(f"{label:{width}s} {row}  {first['kind']:5s} min {min(values):.4g} median "
              f"{statistics.median(values):.4g} max {max(values):.4g}; text: {stated(first)}"
              f"{f'; {misses} outside' if misses else ''}"
              f"{f'; rule: {rule}' if rule else ''}{'' if informative else '  <-- swings: fix or make it a frequency'}")
    walls = [runs[c]["wall"] for c in columns]
    cpus = [runs[c]["cpu"] for c in columns]
    print(f"per run: wall {min(walls):.0f}-{max(walls):.0f} s, CPU {min(cpus):.0f}-{max(cpus):.0f} s")
    return printed, flagged, failures


def collect(cases, results):
    """{chapter: {"s<seed>[/on|/off]": run}} for the runs done so far, in the order of cases."""
    tables = {}
    for chapter, seed, cpu in cases:
        if (chapter, seed, cpu) in results:
            tables.setdefault(chapter.name, {})[f"s{seed}{'' if cpu == 'native' else '/' + cpu}"] = \
                results[chapter, seed, cpu]
    return tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter names or prefixes, e.g. ch05 (default: all)")
    parser.add_argument("--seeds", default="0-19", help="e.g. 0-19 or 20-29 or 0,2,7 (default 0-19)")
    parser.add_argument("--cpus", choices=["native", "both"], default="native",
                        help="both: with AVX-512, also run each seed with numpy's AVX-512 kernels off")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--check", action="store_true", help="report the share of values outside the text's claims")
    parser.add_argument("--quick", action="store_true", help="pass --quick to the chapters")
    parser.add_argument("--json", metavar="PATH", help="write every run's claims as JSON")
    parser.add_argument("--load", metavar="PATH", nargs="+", help="tabulate runs saved with --json instead")
    args = parser.parse_args(argv)
    if args.load:
        tables = {}
        for path in args.load:
            for name, runs in json.loads(Path(path).read_text()).items():
                tables.setdefault(name, {}).update(runs)
    else:
        chapters = [chapter_path(n) for n in args.chapters] if args.chapters else CHAPTERS
        cpus = ["on", "off"] if args.cpus == "both" and has_avx512() else ["native"]
        if args.cpus == "both" and cpus == ["native"]:
            print("this CPU has no AVX-512: each seed runs once, with numpy's native kernels")
        cases = [(c, s, cpu) for c in chapters for cpu in cpus for s in seed_list(args.seeds)]
        results = {}
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {pool.submit(run_once, *case, args.quick): case for case in cases}
            for future in as_completed(futures):        # saved after every run: a stopped sweep keeps its runs
                results[futures[future]] = future.result()
                if args.json:
                    Path(args.json).write_text(json.dumps(collect(cases, results), indent=1))
        tables = collect(cases, results)
    if args.json:
        Path(args.json).write_text(json.dumps(tables, indent=1))
        print(f"wrote {args.json}")
    summary = {name: tabulate(name, runs) for name, runs in tables.items()}
    if args.check:
        print(f"\n{'chapter':32s} {'values':>7s} {'outside':>8s} {'share':>7s} {'frequency claims failed':>24s}")
        for name, (printed, flagged, failures) in summary.items():
            print(f"{name:32s} {printed:7d} {flagged:8d} {flagged / max(printed, 1):7.1%} {failures:24d}")
        printed, flagged, failures = (sum(s[i] for s in summary.values()) for i in range(3))
        print(f"{'total':32s} {printed:7d} {flagged:8d} {flagged / max(printed, 1):7.1%} {failures:24d}")
    return tables


if __name__ == "__main__":
    main()

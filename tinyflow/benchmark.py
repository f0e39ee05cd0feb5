"""How long tinyflow takes: training steps, log_prob and sample, and how they grow.

    python -m tinyflow.benchmark [--quick] [--repeats R] [--json PATH]

Every time is the median, in ms, of `repeats` timed runs (time.perf_counter) after `warmup`
untimed ones (the first calls fill caches and import lazily). The tables:

    training step   loss, gradient, AdamW update (fit's path) for the tutorial models
    spline step     a spline coupling flow beside an affine one of the same size, timed in turns
    conditional     conditional flows (context_dim=C) beside the same flows without a context, in turns
    fresh process   the first 50 steps of the chapter-5 model in a new Python process, in the
                    environment as the user has it (no OPENBLAS_NUM_THREADS set), on fit's path
                    and on the path a student writes: autograd.value_and_grad of the loss on the
                    nested params, then adam_update
    scaling         log_prob and sample of 4-layer coupling, IAF and MAF stacks, against D and N
    peak memory     of one training step, by tracemalloc

Memory is measured with tracemalloc because numpy registers every array buffer with it: the
peak is the bytes alive at the worst moment of the step (the autograd tape included), and it
can be reset before each measurement. The process's maxrss only ever grows, so its delta misses
any step that fits into memory an earlier step already touched.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as onp

from .autoregressive import AffineAutoregressive
from .coupling import AffineCoupling, alternating_masks
from .distributions import StandardNormal
from .flow import Flow
from .invert import Invert
from .permutation import LULinear, Reverse
from .spline_coupling import SplineCoupling
from .targets import Banana, ShiftedGaussian, UniformConditionalGaussian
from .train import adam_update, flat_loss_and_grad, forward_kl


def timings(run, repeats, warmup):
    """Wall time of run() in ms after `warmup` untimed calls: {"ms": median, "min_ms": fastest,
    "cpu_ms": median CPU time of this process}. On a shared machine the wall median includes
    waiting for other processes; the minimum and the CPU time show the cost without them."""
    for _ in range(warmup):
        run()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"ms": 1e3 * statistics.median(wall), "min_ms": 1e3 * min(wall), "cpu_ms": 1e3 * statistics.median(cpu)}


def training_step(flow, sample_data, batch_size, seed=0):
    """One step of fit, as a function: a fresh batch, loss and gradient, finiteness check, AdamW."""
    rng = onp.random.default_rng(seed)
    theta, _, loss_and_grad = flat_loss_and_grad(forward_kl(flow), flow.init(rng))
    state = {"theta": theta, "m": onp.zeros_like(theta), "v": onp.zeros_like(theta), "t": 0}

    def step():
        value, g = loss_and_grad(state["theta"], sample_data(rng, batch_size))
        if onp.isfinite(value) and onp.all(onp.isfinite(g)):
            state["t"] += 1
            state["theta"], state["m"], state["v"] = adam_update(
                state["theta"], g, state["m"], state["v"], state["t"], 1e-3)
    return step


def tutorial_models(quick):
    """(name, flow, target, batch size): the models of the three seed tutorials. The coupling
    models use ReLU conditioners, as the tutorials (and chapters 3 and 5) do."""
    blocks, scale = (2, 16) if quick else (16, 1)
    coupling_lu = [layer for mask in alternating_masks(2, blocks)
                   for layer in (AffineCoupling(mask, hidden=(64, 64), activation="relu"), LULinear())]
    real_nvp = [AffineCoupling(mask, hidden=(128, 128), activation="relu")
                for mask in alternating_masks(2, blocks // 2)]
    return [
        ("IAF (64,), ShiftedGaussian", Flow(StandardNormal(2), [AffineAutoregressive(hidden=(64,))]),
         ShiftedGaussian(), 1000 // scale),
        (f"{blocks} x [coupling (64,64) relu + LU], UCG", Flow(StandardNormal(2), coupling_lu),
         UniformConditionalGaussian(), 512 // scale),
        (f"RealNVP {blocks // 2} x coupling (128,128) relu, Banana", Flow(StandardNormal(2), real_nvp),
         Banana(), 1024 // scale),
    ]


def spline_models(quick):
    """(name, flow, target, batch size): spline couplings beside affine couplings of the same
    size (8 layers, (64, 64) ReLU conditioners, batch 512; 8 bins on [-4, 4])."""
    layers, batch = (2, 32) if quick else (8, 512)
    masks = alternating_masks(2, layers)
    affine = [AffineCoupling(mask, hidden=(64, 64), activation="relu") for mask in masks]
    spline = [SplineCoupling(mask, hidden=(64, 64), num_bins=8, bound=4.0, activation="relu") for mask in masks]
    return [(f"{layers} x affine coupling (64,64) relu, Banana", Flow(StandardNormal(2), affine), Banana(), batch),
            (f"{layers} x spline coupling (64,64) relu, 8 bins", Flow(StandardNormal(2), spline), Banana(), batch)]


def conditional_models(quick):
    """(name, flow, sample_data, batch size) in pairs, without and with a context of C columns:
    8 affine couplings (64, 64) ReLU in 2D with C = 2, and a 5-layer MAF (64, 64) in 10D with
    C = 10 (the sizes of chapter 11's gaussian_linear task). The context is random: the cost
    does not depend on what it means."""
    couplings, mafs, batch = (2, 2, 32) if quick else (8, 5, 512)

    def coupling_flow(context_dim):
        return Flow(StandardNormal(2), [AffineCoupling(mask, (64, 64), activation="relu", context_dim=context_dim)
                                        for mask in alternating_masks(2, couplings)])

    def maf_flow(context_dim):
        layers = []
        for _ in range(mafs):
            layers += [Invert(AffineAutoregressive((64, 64), context_dim=context_dim)), Reverse()]
        return Flow(StandardNormal(10), layers)

    def pairs(dim, context_dim):
        return lambda rng, n: (rng.standard_normal((n, dim)), rng.standard_normal((n, context_dim)))

    banana = Banana().sample
    return [(f"{couplings} x affine coupling (64,64) relu, 2D", coupling_flow(0), banana, batch),
            (f"  the same with a context, C = 2", coupling_flow(2), pairs(2, 2), batch),
            (f"{mafs} x MAF (64,64) + Reverse, 10D", maf_flow(0), lambda rng, n: rng.standard_normal((n, 10)), batch),
            (f"  the same with a context, C = 10", maf_flow(10), pairs(10, 10), batch)]


def interleaved(models, repeats, warmup):
    """Median and fastest wall time (ms) of each model's training step, the models taking turns
    so that all of them see the same machine: on a shared one the ratios are the numbers."""
    steps = [training_step(flow, sample_data, batch) for _, flow, sample_data, batch in models]
    times = [[] for _ in steps]
    for step in steps:
        for _ in range(warmup):
            step()
    for _ in range(repeats):
        for step, row in zip(steps, times):
            start = time.perf_counter()
            step()
            row.append(1e3 * (time.perf_counter() - start))
    return [{"model": name, "batch": batch, "ms": statistics.median(row), "min_ms": min(row)}
            for (name, _, _, batch), row in zip(models, times)]


FRESH_PROCESS = """
import sys, time
import numpy as np
from autograd import value_and_grad
import tinyflow as tf
from tinyflow.benchmark import training_step, tutorial_models
_, flow, target, batch = tutorial_models(sys.argv[2] == "quick")[1]
rng = np.random.default_rng(0)
if sys.argv[1] == "fit":
    step = training_step(flow, target.sample, batch)
else:                                           # the README's loop around autograd.value_and_grad
    params = flow.init(rng)
    loss_and_grad = value_and_grad(tf.forward_kl(flow))
    theta, unflatten = tf.flatten_params(params)
    state = {"params": params, "m": np.zeros_like(theta), "v": np.zeros_like(theta), "t": 0}
    def step():
        value, g = loss_and_grad(state["params"], target.sample(rng, batch))
        state["t"] += 1
        theta, state["m"], state["v"] = tf.adam_update(tf.flatten_params(state["params"])[0], tf.flatten_params(g)[0],
                                                       state["m"], state["v"], state["t"], 1e-3)
        state["params"] = unflatten(theta)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(1e3 * np.median(times), 1e3 * np.mean(times))
"""


def fresh_process(path, quick, steps=50):
    """Median and mean ms of the first `steps` steps of the chapter-5 model in a new process, in
    the user's environment without BLAS thread settings (the 'default environment'); path is
    "fit" (flat parameters, as fit trains) or "nested" (value_and_grad on the nested params)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, path, "quick" if quick else "full", str(steps)],
                            env=env, capture_output=True, text=True, check=True)
    median, mean = map(float, result.stdout.split())
    return {"path": path, "steps": steps, "ms": median, "mean_ms": mean}


def stack(kind, dim, num_layers=4):
    """A 4-layer flow of one layer kind (library default widths), Reverse between autoregressive layers."""
    if kind == "coupling":
        return Flow(StandardNormal(dim), [AffineCoupling(mask) for mask in alternating_masks(dim, num_layers)])
    make = AffineAutoregressive if kind == "IAF" else (lambda: Invert(AffineAutoregressive()))
    layers = []
    for _ in range(num_layers):
        layers += [make(), Reverse()]
    return Flow(StandardNormal(dim), layers[:-1])


def scaling(dims, batches, repeats, warmup):
    """log_prob and sample times of each stack: against D at the first batch size, against N at D = 8."""
    rows = []
    cases = [(d, batches[0]) for d in dims] + [(min(8, dims[-1]), n) for n in batches]
    for kind in ("coupling", "IAF", "MAF"):
        for dim, n in dict.fromkeys(cases):             # keeps order, drops the shared case
            rng = onp.random.default_rng(0)
            flow = stack(kind, dim)
            params = flow.init(rng)
            x = rng.standard_normal((n, dim))
            for op, run in (("log_prob", lambda: flow.log_prob(params, x)),
                            ("sample", lambda: flow.sample(params, rng, n))):
                rows.append({"stack": kind, "op": op, "dim": dim, "batch": n, **timings(run, repeats, warmup)})
    return rows


def peak_memory_mib(step):
    step()                                              # warm up outside the measurement
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def machine():
    model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    try:
        blas = onp.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except (TypeError, KeyError):                       # older numpy: no mode="dicts"
        blas = "unknown"
    settings = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "MALLOC_TOP_PAD_",
                "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    environment = {name: os.environ[name] for name in settings if name in os.environ}
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": onp.__version__, "autograd": importlib.metadata.version("autograd"), "blas": blas,
            "environment": environment,     # BLAS threads and glibc's heap trimming both matter here
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(quick=False, repeats=None):
    repeats = repeats or (2 if quick else 30)
    warmup = 1 if quick else 5
    results = {"machine": machine(), "quick": quick, "repeats": repeats, "warmup": warmup,
               "training_step": [], "spline_step": [], "conditional_step": [], "fresh_process": [], "scaling": [], "peak_memory": []}
    for name, flow, target, batch in tutorial_models(quick):
        step = training_step(flow, target.sample, batch)
        results["training_step"].append({"model": name, "batch": batch, **timings(step, repeats, warmup)})
        results["peak_memory"].append({"model": name, "batch": batch, "MiB": peak_memory_mib(step)})
    rows = interleaved([(name, flow, target.sample, batch) for name, flow, target, batch in spline_models(quick)],
                       repeats, warmup)
    rows[1]["ratio"] = rows[1]["ms"] / rows[0]["ms"]
    results["spline_step"] = rows
    rows = interleaved(conditional_models(quick), repeats, warmup)
    for plain, conditional in zip(rows[::2], rows[1::2]):
        conditional["ratio"] = conditional["ms"] / plain["ms"]
    results["conditional_step"] = rows
    results["fresh_process"] = [fresh_process(path, quick, 5 if quick else 50) for path in ("fit", "nested")]
    dims, batches = ((2, 4), (32, 64)) if quick else ((2, 8, 32, 64), (256, 1024, 4096, 16384))
    results["scaling"] = scaling(dims, batches, max(1, repeats // 6), warmup=1)
    return results


def print_tables(results):
    m = results["machine"]
    print(f"{m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
          f"autograd {m['autograd']}, BLAS {m['blas']} {m['environment'] or ''}")
    print(f"load average at start (other processes competing for the cores): {m['load_average_1min']}")
    print(f"ms: median wall time of {results['repeats']} runs after {results['warmup']} warm-up runs; "
          f"min ms: the fastest run; CPU ms: median CPU time of this process\n")
    columns = f"{'ms':>9s} {'min ms':>9s} {'CPU ms':>9s}"
    print(f"{'training step (loss + gradient + AdamW)':46s} {'batch':>6s} {columns} {'peak MiB':>9s}")
    for row, mem in zip(results["training_step"], results["peak_memory"]):
        print(f"{row['model']:46s} {row['batch']:6d} {_times(row)} {mem['MiB']:9.1f}")
    print(f"\n{'spline against affine, interleaved steps':46s} {'batch':>6s} {'ms':>9s} {'min ms':>9s}")
    for row in results["spline_step"]:
        ratio = f"   {row['ratio']:.2f}x the affine step" if "ratio" in row else ""
        print(f"{row['model']:46s} {row['batch']:6d} {row['ms']:9.2f} {row['min_ms']:9.2f}{ratio}")
    print(f"\n{'conditional against unconditional, interleaved':46s} {'batch':>6s} {'ms':>9s} {'min ms':>9s}")
    for row in results["conditional_step"]:
        ratio = f"   {row['ratio']:.2f}x without a context" if "ratio" in row else ""
        print(f"{row['model']:46s} {row['batch']:6d} {row['ms']:9.2f} {row['min_ms']:9.2f}{ratio}")
    print(f"\nfirst steps of {results['training_step'][1]['model']} in a fresh process, default environment "
          f"(no OPENBLAS_NUM_THREADS):")
    for row in results["fresh_process"]:
        path = "fit's path (flat theta)" if row["path"] == "fit" else "value_and_grad on nested params"
        print(f"  {path:34s} first {row['steps']:3d} steps: median {row['ms']:7.2f} ms, mean {row['mean_ms']:7.2f} ms")
    print(f"\n{'4-layer stack':13s} {'op':9s} {'D':>4s} {'batch':>6s} {columns}")
    for row in results["scaling"]:
        print(f"{row['stack']:13s} {row['op']:9s} {row['dim']:4d} {row['batch']:6d} {_times(row)}")


def _times(row):
    return f"{row['ms']:9.2f} {row['min_ms']:9.2f} {row['cpu_ms']:9.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and batches, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per number")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(args.quick, args.repeats)
    print_tables(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()

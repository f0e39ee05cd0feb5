"""How long tinyflow takes: training steps, log_prob and sample, and how they grow.

    python -m tinyflow.benchmark [--quick] [--repeats R] [--json PATH]

The tables:

    training step   loss, gradient, AdamW update (fit's path) for the tutorial models
    side by side    jobs timed in turns, as ratios to the first: spline against affine couplings,
                    conditional against unconditional flows, the fused coupling block against
                    the readable chain (chapter 5's 16 x [coupling + LU] through fit, fused /
                    fused=False), and the chapters' cost comparisons (chapter 3's relu against
                    tanh conditioners, chapter 8's three rungs: fused, readable primitives and
                    textbook, chapter 10's spline flow against
                    its affine flow, chapter 13's continuous flow against chapter 5's coupling
                    flow and its maximum-likelihood step against a flow-matching step)
    per operation   what autograd's forward + backward adds to one NumPy operation (chapter 8)
    fused step      where the time of chapter 5's fused step goes (chapter 8): the step, its loss and
                    gradient, their arithmetic alone (the tape replayed in plain NumPy) and the
                    couplings' matrix products alone
    fresh process   the first 50 steps of the chapter-5 model in a new Python process, in the
                    environment as the user has it (no OPENBLAS_NUM_THREADS set), on fit's path
                    and on the path a student writes: autograd.value_and_grad of the loss on the
                    nested params, then adam_update
    scaling         log_prob and sample of 4-layer coupling, IAF and MAF stacks, against D and N
    peak memory     of one training step, by tracemalloc

A time is the median, in ms, of `repeats` timed runs after `warmup` untimed ones (the first calls
fill caches and import lazily). Absolute times move with the CPU, the numpy build and whatever
else the machine runs; a ratio of two jobs that take turns moves much less, since both see the
same machine. So the chapters state no times: this is where you measure yours. Ratios are of
medians of CPU time (time.process_time: waiting for other programs does not count).

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

import autograd.numpy as np
import numpy as onp
from autograd import grad
from autograd.util import toposort

from .autoregressive import AffineAutoregressive
from .continuous import ContinuousFlow
from .coupling import AffineCoupling, alternating_masks
from .distributions import DiagNormal, StandardNormal
from .elementwise import Affine
from .energies import Energy
from .flow import Flow
from .flow_matching import flow_matching_batches, flow_matching_loss
from .invert import Invert
from .permutation import LULinear, Reverse
from .planar import Planar
from .spline_coupling import SplineCoupling
from .stack import Stack
from .tape import RecordingNode, nodes_per_step, traced_step
from .targets import Banana, Checkerboard, ShiftedGaussian, UniformConditionalGaussian
from .train import adam_update, flat_loss_and_grad, forward_kl, gaussian_noise, reverse_kl


def interleaved(jobs, repeats, warmup):
    """Time each job of [(name, job)] `repeats` times, the jobs taking turns so that all of them see
    the same machine: [{"job", "ms", "min_ms", "cpu_ms"}] (wall median, fastest, CPU median)."""
    for _, job in jobs:
        for _ in range(warmup):
            job()
    wall, cpu = [[] for _ in jobs], [[] for _ in jobs]
    for _ in range(repeats):
        for (_, job), w, c in zip(jobs, wall, cpu):
            start, start_cpu = time.perf_counter(), time.process_time()
            job()
            w.append(1e3 * (time.perf_counter() - start))
            c.append(1e3 * (time.process_time() - start_cpu))
    return [{"job": name, "ms": statistics.median(w), "min_ms": min(w), "cpu_ms": statistics.median(c)}
            for (name, _), w, c in zip(jobs, wall, cpu)]


def timings(run, repeats, warmup):
    """One job's {"ms", "min_ms", "cpu_ms"}: on a shared machine the wall median includes waiting
    for other processes; the fastest run and the CPU median show the cost without them."""
    row = interleaved([("", run)], repeats, warmup)[0]
    return {key: row[key] for key in ("ms", "min_ms", "cpu_ms")}


def training_step(flow, sample_data, batch_size, seed=0, loss=None):
    """One step of fit, as a function: a fresh batch, loss (default: forward KL) and gradient,
    finiteness check, AdamW."""
    rng = onp.random.default_rng(seed)
    theta, _, loss_and_grad = flat_loss_and_grad(loss or forward_kl(flow), flow.init(rng))
    state = {"theta": theta, "m": onp.zeros_like(theta), "v": onp.zeros_like(theta), "t": 0}

    def step():
        value, g = loss_and_grad(state["theta"], sample_data(rng, batch_size))
        if onp.isfinite(value) and onp.all(onp.isfinite(g)):
            state["t"] += 1
            state["theta"], state["m"], state["v"] = adam_update(
                state["theta"], g, state["m"], state["v"], state["t"], 1e-3)
    return step


def flow2d(layers):
    return Flow(StandardNormal(2), layers)


def couplings(num_layers, hidden, activation="relu", with_lu=False, dim=2, **options):
    """num_layers AffineCouplings with alternating masks, each followed by an LULinear if with_lu."""
    layers = []
    for mask in alternating_masks(dim, num_layers):
        layers += [AffineCoupling(mask, hidden, activation=activation, **options)] + ([LULinear()] if with_lu else [])
    return layers


def tutorial_models(quick):
    """(name, flow, target, batch size): the models of the three seed tutorials. The coupling
    models use ReLU conditioners, as the tutorials (and chapters 3 and 5) do."""
    blocks, scale = (2, 16) if quick else (16, 1)
    return [
        ("IAF (64,), ShiftedGaussian", flow2d([AffineAutoregressive(hidden=(64,))]), ShiftedGaussian(), 1000 // scale),
        (f"{blocks} x [coupling (64,64) relu + LU], UCG", flow2d(couplings(blocks, (64, 64), with_lu=True)),
         UniformConditionalGaussian(), 512 // scale),
        (f"RealNVP {blocks // 2} x coupling (128,128) relu, Banana", flow2d(couplings(blocks // 2, (128, 128))),
         Banana(), 1024 // scale),
    ]


# Chapter 8's textbook model: the 16-block coupling + LU flow written with autograd.numpy only (as
# tinyflow was before its primitives), on the very same parameters as the library's layers.
class TextbookCoupling(AffineCoupling):
    def forward(self, params, x):
        x_a, x_b = x[:, self.index_a], x[:, self.index_b]
        s, t = self._s_t(params, x_a)
        return self._merge(x_a, x_b * np.exp(s) + t), np.sum(s, axis=1)

    def inverse(self, params, y):
        y_a, y_b = y[:, self.index_a], y[:, self.index_b]
        s, t = self._s_t(params, y_a)
        return self._merge(y_a, (y_b - t) * np.exp(-s)), -np.sum(s, axis=1)

    def _s_t(self, params, h):
        for layer in params[:-1]:                                  # ReLU MLP: dot, add, maximum
            h = np.maximum(np.dot(h, layer["W"]) + layer["b"], 0.0)
        h = np.dot(h, params[-1]["W"]) + params[-1]["b"]
        n_b = len(self.index_b)
        return self.s_max * np.tanh(h[:, :n_b] / self.s_max), h[:, n_b:]

    def _merge(self, part_a, part_b):                              # concatenate, then back to the original order
        return np.concatenate([part_a, part_b], axis=1)[:, onp.argsort(onp.concatenate([self.index_a, self.index_b]))]


class TextbookLU(LULinear):
    def weight(self, params):
        LU = params["LU"]
        return np.dot(np.tril(LU, -1) + np.eye(len(LU)), np.triu(LU, 1) + np.diag(np.exp(np.diag(LU))))

    def forward(self, params, x):
        return np.dot(x, self.weight(params).T) + params["b"], np.sum(np.diag(params["LU"])) * np.ones(len(x))

    def inverse(self, params, y):
        x = np.linalg.solve(self.weight(params), (y - params["b"]).T).T
        return x, -np.sum(np.diag(params["LU"])) * np.ones(len(y))


class TextbookFlow(Flow):
    def log_prob(self, params, x):
        z, log_det = x, 0.0
        for layer, p in zip(reversed(self.layers), reversed(params["layers"])):
            z, layer_log_det = layer.inverse(p, z)
            log_det = log_det + layer_log_det
        return self.base.log_prob(params["base"], z) + log_det


def textbook_flow(num_blocks, hidden=(64, 64)):
    layers = [layer for mask in alternating_masks(2, num_blocks)
              for layer in (TextbookCoupling(mask, hidden, activation="relu"), TextbookLU())]
    return TextbookFlow(StandardNormal(2), layers)


def step_anatomy(quick, repeats, warmup):
    """Chapter 5's model, fused (16 x [coupling (64,64) relu + LU], batch 512): CPU medians of fit's
    step, of its loss and gradient, of their arithmetic alone (every primitive's NumPy function on
    the values it saw, then every VJP on the gradient it got: no boxes, no tape, no adding up) and
    of the couplings' matrix products alone (per MLP layer a = h W; dW = h^T da, db = 1^T da,
    dh = da W^T), in turns. What is left of the loss and gradient is the bookkeeping."""
    blocks, batch_size = (2, 32) if quick else (16, 512)
    flow, sample = flow2d(couplings(blocks, (64, 64), with_lu=True)), UniformConditionalGaussian().sample
    rng = onp.random.default_rng(0)
    params, batch = flow.init(rng), sample(rng, batch_size)
    theta, _, loss_and_grad = flat_loss_and_grad(forward_kl(flow), params)
    tape = list(toposort(traced_step(forward_kl(flow), params, batch, RecordingNode)))
    nodes = [node for node in reversed(tape) if node.fun is not None]

    def arithmetic():
        for node in nodes:
            node.fun.fun(*node.args, **node.kwargs)
        for node in reversed(nodes):
            node.vjp(node.g)
    sizes = (1, 64, 64, 2)
    h = [rng.standard_normal((batch_size, n)) for n in sizes]
    W = [rng.standard_normal(shape) for shape in zip(sizes, sizes[1:])]
    ones = onp.ones(batch_size)

    def products():
        for _ in range(blocks):
            for j in range(3):
                onp.dot(h[j], W[j])
            for j in reversed(range(3)):
                onp.dot(h[j].T, h[j + 1]), onp.dot(ones, h[j + 1]), onp.dot(h[j + 1], W[j].T)
    rows = interleaved([("step", training_step(flow, sample, batch_size)),
                        ("loss and gradient", lambda: loss_and_grad(theta, batch)),
                        ("arithmetic alone", arithmetic), ("matrix products alone", products)], repeats, warmup)
    return {"model": f"{blocks} x [coupling (64,64) relu + LU], fused", "batch": batch_size, "nodes": len(tape),
            **{row["job"]: row["cpu_ms"] for row in rows}}


def steps(key, title, *models):
    """A side-by-side pair of training steps: models are (name, flow, sample_data, batch)."""
    return key, title, [(name, training_step(flow, data, batch)) for name, flow, data, batch in models]


def chapter9(quick):
    """Chapter 9's deepest flow, trained by reverse KL on U1: K planar layers side by side in the
    Flow (one primitive each) against the same K layers as one Stack (the same numbers)."""
    K, batch = (4, 64) if quick else (32, 1024)

    def reverse_step(layers):
        flow = Flow(DiagNormal(2), layers)
        return training_step(flow, gaussian_noise(2), batch, loss=reverse_kl(flow, Energy(1).log_prob))
    return [("ch09", f"chapter 9: {K} planar layers, reverse KL on U1, batch {batch}: layer by layer / one Stack",
             [("layer by layer", reverse_step([Planar() for _ in range(K)])),
              ("Stack", reverse_step([Stack(Planar(), K)]))])]


def library_pairs(quick):
    """Splines against affine couplings of the same size; conditional flows against the same
    flows without a context (C = 2 in 2D; C = 10 in 10D, chapter 11's gaussian_linear sizes; the
    context is random: the cost does not depend on what it means)."""
    layers, mafs, batch = (2, 2, 32) if quick else (8, 5, 512)
    banana = Banana().sample
    spline = [SplineCoupling(mask, (64, 64), num_bins=8, bound=4.0, activation="relu")
              for mask in alternating_masks(2, layers)]

    def maf(context_dim):
        return Flow(StandardNormal(10), [layer for _ in range(mafs) for layer in
                                         (Invert(AffineAutoregressive((64, 64), context_dim=context_dim)), Reverse())])

    def normal(*dims):
        return lambda rng, n: tuple(rng.standard_normal((n, d)) for d in dims)
    return [
        steps("spline", f"{layers} layers (64,64) relu, Banana, batch {batch}: spline (8 bins) / affine coupling step",
              ("affine", flow2d(couplings(layers, (64, 64))), banana, batch), ("spline", flow2d(spline), banana, batch)),
        steps("conditional 2D", f"{layers} affine couplings (64,64) relu, 2D, batch {batch}: context C = 2 / none",
              ("no context", flow2d(couplings(layers, (64, 64))), banana, batch),
              ("context C = 2", flow2d(couplings(layers, (64, 64), context_dim=2)), normal(2, 2), batch)),
        steps("conditional 10D", f"{mafs} x MAF (64,64) + Reverse, 10D, batch {batch}: context C = 10 / none",
              ("no context", maf(0), lambda rng, n: normal(10)(rng, n)[0], batch),
              ("context C = 10", maf(10), normal(10, 10), batch)),
    ]


def fused_pair(quick):
    """Chapter 5's model through fit, its couplings fused into one primitive each (the default)
    against the readable chain of small primitives (fused=False): the same numbers, two tapes."""
    blocks, batch = (2, 32) if quick else (16, 512)
    ucg = UniformConditionalGaussian().sample
    return [steps("fused", f"{blocks} x [coupling (64,64) relu + LU], UCG, batch {batch}, through fit: "
                  "readable chain (fused=False) / fused coupling",
                  ("fused", flow2d(couplings(blocks, (64, 64), with_lu=True)), ucg, batch),
                  ("readable", flow2d(couplings(blocks, (64, 64), with_lu=True, fused=False)), ucg, batch))]


def chapter_pairs(quick):
    """The cost comparisons chapters 3, 8 and 10 make, on the chapters' own models."""
    hidden, batch = ((8, 8), 32) if quick else ((32, 32), 256)
    banana, ucg, checkerboard = Banana().sample, UniformConditionalGaussian().sample, Checkerboard().sample
    chapter3 = [(activation, flow2d(couplings(4, hidden, activation=activation) + [Affine()]), banana, batch)
                for activation in ("tanh", "relu")]
    blocks, batch8 = (2, 32) if quick else (16, 512)
    (splines, affines), batch10 = ((2, 4), 32) if quick else ((4, 8), 256)
    spline = [SplineCoupling(mask, (32, 32), num_bins=16, bound=4.5, activation="relu")
              for mask in alternating_masks(2, splines)]
    return [
        steps("ch03", f"chapter 3: 4 couplings {hidden} + Affine, Banana, batch {batch}: relu / tanh conditioners",
              *chapter3),
        steps("ch08", f"chapter 8: {blocks} x [coupling (64,64) relu + LU], UCG, batch {batch8}: readable "
              "primitives (fused=False), textbook / fused",
              ("fused", flow2d(couplings(blocks, (64, 64), with_lu=True)), ucg, batch8),
              ("primitives", flow2d(couplings(blocks, (64, 64), with_lu=True, fused=False)), ucg, batch8),
              ("textbook", textbook_flow(blocks), ucg, batch8)),
        steps("ch10", f"chapter 10: {splines} spline (32,32), 16 bins / {affines} affine (34,34) couplings "
              f"(as many parameters), Checkerboard, batch {batch10}",
              ("affine", flow2d(couplings(affines, (34, 34))), checkerboard, batch10),
              ("spline", flow2d(spline), checkerboard, batch10)),
    ]


def chapter13(quick):
    """Chapter 13's costs: its continuous flow (DiagNormal base set to the banana's mean and std, a
    (64, 64) tanh field, 16 RK4 steps to sample and evaluate) against chapter 5's 16 x [coupling +
    LU] flow, 2,000 points; the loss and gradient of maximum likelihood through an 8-step RK4 solve
    against flow matching's, batch 256 (drawing the batch aside, as the chapter times them), and
    the cost of drawing an averaged flow-matching batch."""
    solver_steps, points, blocks, batch = (2, 100, 2, 32) if quick else (16, 2000, 16, 256)
    rng = onp.random.default_rng(0)
    banana = Banana()
    pool = banana.sample(rng, 10_000)
    continuous = ContinuousFlow(DiagNormal(2), (64, 64), num_steps=solver_steps)
    params = continuous.init(rng)
    params["base"] = {"loc": pool.mean(axis=0), "log_scale": onp.log(pool.std(axis=0))}
    coupling = flow2d(couplings(blocks, (64, 64), with_lu=True))
    coupling_params = coupling.init(rng)
    x = banana.sample(rng, points)
    ml = ContinuousFlow(DiagNormal(2), (64, 64), num_steps=2 if quick else 8)
    fm_batches = flow_matching_batches(continuous, params, banana.sample, average=True)
    return [
        ("ch13 sample", f"chapter 13: sample {points} points, continuous ({solver_steps} RK4 steps) / chapter 5's "
         f"{blocks} x [coupling + LU]",
         [("coupling + LU", lambda: coupling.sample(coupling_params, rng, points)),
          ("continuous", lambda: continuous.sample(params, rng, points))]),
        ("ch13 density", f"chapter 13: log_prob of {points} points, continuous / chapter 5's coupling + LU",
         [("coupling + LU", lambda: coupling.log_prob(coupling_params, x)),
          ("continuous", lambda: continuous.log_prob(params, x))]),
        ("ch13 step", f"chapter 13: loss and gradient on one batch of {batch}, as chapter 13 times them: maximum "
         f"likelihood through a {ml.num_steps}-step RK4 solve / flow matching; and drawing an averaged batch",
         [("flow matching", gradient(flow_matching_loss(continuous), params, fm_batches(rng, batch))),
          ("max. likelihood", gradient(forward_kl(ml), params, banana.sample(rng, batch))),
          ("drawing FM batch", lambda: fm_batches(rng, batch))]),
    ]


def gradient(loss, params, batch):
    """The loss and gradient of fit's step on a fixed batch, without drawing it or updating."""
    theta, _, loss_and_grad = flat_loss_and_grad(loss, params)
    return lambda: loss_and_grad(theta, batch)


def compare(quick, repeats, warmup):
    """Time the jobs of every side-by-side comparison in turns: [{"key", "title", "rows", "ratio"}]; each
    row after the first has its "ratio" to the first (of CPU medians), and "ratio" is the second row's."""
    results = []
    for key, title, jobs in library_pairs(quick) + fused_pair(quick) + chapter_pairs(quick) + chapter9(quick) + chapter13(quick):
        rows = interleaved(jobs, repeats, warmup)
        for row in rows[1:]:
            row["ratio"] = row["cpu_ms"] / rows[0]["cpu_ms"]
        results.append({"key": key, "title": title, "rows": rows, "ratio": rows[1]["ratio"]})
    return results


def chapter8_nodes(quick):
    """Nodes per training step of chapter 8's models (exact counts: no timing): the textbook model,
    the library's readable chain of primitives (fused=False) and its fused coupling blocks."""
    blocks = 2 if quick else 16
    flows = {"textbook": textbook_flow(blocks),
             "primitives": flow2d(couplings(blocks, (64, 64), with_lu=True, fused=False)),
             "fused": flow2d(couplings(blocks, (64, 64), with_lu=True))}
    rng = onp.random.default_rng(0)
    params, batch = flows["primitives"].init(rng), UniformConditionalGaussian().sample(rng, 64)
    return {name: nodes_per_step(forward_kl(flow), params, batch) for name, flow in flows.items()}


OPERATIONS = {"x * 0.999": lambda x: x * 0.999, "x + 0.001": lambda x: x + 0.001, "np.tanh(x)": np.tanh,
              "np.dot(x, M)": lambda x: np.dot(x, onp.array([[0.8, 0.6], [-0.6, 0.8]])),
              "x[:, [1, 0]]": lambda x: x[:, onp.array([1, 0])]}


def per_operation(quick, repeats, warmup):
    """Chapter 8's per-node cost: a chain of the same operation on a (512, 2) array, NumPy alone
    against autograd's forward + backward, in turns: [{"op", "numpy_us", "autograd_us", "ratio"}]
    (µs per operation, medians of CPU time)."""
    chain = 20 if quick else 200
    x = onp.random.default_rng(0).standard_normal((512, 2))
    rows = []
    for label, operation in OPERATIONS.items():
        def f(x, operation=operation):
            for _ in range(chain):
                x = operation(x)
            return np.sum(x)
        plain, taped = interleaved([("numpy", lambda: f(x)), ("autograd", lambda: grad(f)(x))], repeats, warmup)
        rows.append({"op": label, "numpy_us": 1e3 * plain["cpu_ms"] / chain, "autograd_us": 1e3 * taped["cpu_ms"] / chain,
                     "ratio": taped["cpu_ms"] / plain["cpu_ms"]})
    return rows


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
                "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "NPY_DISABLE_CPU_FEATURES")
    environment = {name: os.environ[name] for name in settings if name in os.environ}
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": onp.__version__, "autograd": importlib.metadata.version("autograd"), "blas": blas,
            "environment": environment,     # BLAS threads, glibc's heap trimming and SIMD kernels all matter here
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(quick=False, repeats=None):
    repeats = repeats or (2 if quick else 30)
    warmup = 1 if quick else 5
    results = {"machine": machine(), "quick": quick, "repeats": repeats, "warmup": warmup,
               "training_step": [], "peak_memory": []}
    for name, flow, target, batch in tutorial_models(quick):
        step = training_step(flow, target.sample, batch)
        results["training_step"].append({"model": name, "batch": batch, **timings(step, repeats, warmup)})
        results["peak_memory"].append({"model": name, "batch": batch, "MiB": peak_memory_mib(step)})
    results["side_by_side"] = compare(quick, repeats, warmup)
    results["chapter8_nodes"] = chapter8_nodes(quick)
    results["per_operation"] = per_operation(quick, repeats, warmup)
    results["step_anatomy"] = step_anatomy(quick, repeats, warmup)
    results["fresh_process"] = [fresh_process(path, quick, 5 if quick else 50) for path in ("fit", "nested")]
    dims, batches = ((2, 4), (32, 64)) if quick else ((2, 8, 32, 64), (256, 1024, 4096, 16384))
    results["scaling"] = scaling(dims, batches, max(1, repeats // 6), warmup=1)
    results["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return results


def print_tables(results):
    m = results["machine"]
    print(f"{m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
          f"autograd {m['autograd']}, BLAS {m['blas']} {m['environment'] or ''}")
    print(f"load average (other processes competing for the cores): {m['load_average_1min']} at the start, "
          f"{results['load_average_1min_at_end']} at the end")
    print(f"ms: median wall time of {results['repeats']} runs after {results['warmup']} warm-up runs; "
          f"min ms: the fastest run; CPU ms: median CPU time of this process\n")
    columns = f"{'ms':>9s} {'min ms':>9s} {'CPU ms':>9s}"
    print(f"{'training step (loss + gradient + AdamW)':46s} {'batch':>6s} {columns} {'peak MiB':>9s}")
    for row, mem in zip(results["training_step"], results["peak_memory"]):
        print(f"{row['model']:46s} {row['batch']:6d} {_times(row)} {mem['MiB']:9.1f}")
    print(f"\nside by side: jobs taking turns; a ratio is of CPU medians, to the first job\n{'':20s} {columns}")
    for comparison in results["side_by_side"]:
        print(comparison["title"])
        for row in comparison["rows"]:
            print(f"  {row['job']:18s} {_times(row)}" + (f"   ratio {row['ratio']:.2f}" if "ratio" in row else ""))
    nodes = results["chapter8_nodes"]
    print(f"chapter 8: nodes per training step: textbook {nodes['textbook']}, readable primitives "
          f"{nodes['primitives']}, fused {nodes['fused']} (counts, the same on every machine)")
    print(f"\n{'per operation on a (512, 2) array':34s} {'NumPy µs':>9s} {'autograd µs':>12s} {'ratio':>6s}"
          "   (autograd: forward + backward per operation, CPU medians)")
    for row in results["per_operation"]:
        print(f"{row['op']:34s} {row['numpy_us']:9.2f} {row['autograd_us']:12.2f} {row['ratio']:6.1f}")
    print(f"{'median ratio':34s} {'':22s} {statistics.median(row['ratio'] for row in results['per_operation']):6.1f}")
    anatomy = results["step_anatomy"]
    step = anatomy["step"]
    print(f"\nwhere the time of one fused step goes: {anatomy['model']}, batch {anatomy['batch']}, "
          f"{anatomy['nodes']} nodes (CPU medians, in turns)")
    for part in ("step", "loss and gradient", "arithmetic alone", "matrix products alone"):
        print(f"  {part:22s} {anatomy[part]:8.2f} ms  {anatomy[part] / step:5.0%} of the step")
    print(f"  {'bookkeeping':22s} {anatomy['loss and gradient'] - anatomy['arithmetic alone']:8.2f} ms  "
          f"{1e3 * (anatomy['loss and gradient'] - anatomy['arithmetic alone']) / anatomy['nodes']:5.0f} µs per node "
          "(the loss and gradient less their arithmetic: the tape and the layers' Python)")
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

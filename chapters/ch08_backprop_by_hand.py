# %% [markdown]
# # Chapter 8: backprop by hand, and where a training step's time goes
#
# **Goal.** See what autograd does on every operation, measure what that costs, and make a
# training step faster by writing small operations whose backward pass we derive ourselves, then
# a whole coupling layer as one; and find what bounds the step once the nodes are few.
#
# **Key equations.** Autograd records a *node* for every primitive operation y = f(x) on the
# forward pass; the backward pass visits the nodes in reverse and applies each one's
# vector-Jacobian product (VJP), which maps dy = dL/dy, the gradient of the loss L with respect
# to the output, to dx = dL/dx, the gradient with respect to the input:
#
#     dx = dy J,   J = df/dx          (a row vector times the Jacobian, without ever forming J)
#
# For one dense ReLU layer h = max(x W + b, 0) that is
#
#     da = dh * [h > 0],   dx = da W^T,   dW = x^T da,   db = sum over the batch of da.
#
# **Builds on** the coupling and LU model of chapter 5 and the training loop of `tinyflow/train.py`.
# **Library files it explains:** `tinyflow/mlp.py` (`dense_relu`), `tinyflow/linear.py` (`dense`,
# `lu_linear`, `lu_log_det`, `add_all`), `tinyflow/affine.py` (`soft_clamp`, `affine`,
# `affine_inverse`), `tinyflow/columns.py` (`take_columns`, `merge_columns`),
# `tinyflow/coupling_backprop.py` (`coupling_step`: a whole coupling layer as one primitive),
# `tinyflow/leaves.py` (parameters read lazily out of one flat vector) and `tinyflow/memory.py`
# (`keep_freed_memory`).

# %%
import collections
import functools
import os
import resource
import statistics
import subprocess
import sys
import time

import autograd.numpy as np
import matplotlib.pyplot as plt
import numpy as onp
from autograd import grad, make_vjp
from autograd.core import VJPNode
from autograd.extend import defvjp, primitive
from autograd.misc import flatten
from autograd.tracer import trace
from autograd.util import toposort

import tinyflow as tf
from tinyflow.benchmark import machine, peak_memory_mib, training_step
from tinyflow.tape import RecordingNode, traced_step
from tinyflow.plotting import chapter_args, savefig

args = chapter_args(__doc__ or "Chapter 8: backprop by hand")
claim = tf.claims(quick=args.quick)        # prints a result beside what this text states about it
start = time.perf_counter()
SEED = args.seed
BATCH_SIZE = 512                           # points per training step, as in chapter 5
HIDDEN = (64, 64)                          # each coupling's conditioner: 1 -> 64 -> 64 -> 2
NUM_BLOCKS = 4 if args.quick else 16       # (coupling, LULinear) pairs; 16 in chapter 5
CHAIN = 50 if args.quick else 200          # operations in each chain of section 1
REPEATS = 5 if args.quick else 9           # timed runs behind each time (an illustration: the benchmark measures)
WARMUP = 2 if args.quick else 3            # untimed runs first (caches, lazy imports)
rng = onp.random.default_rng(SEED)


def fastest_ms(run, repeats=REPEATS, warmup=WARMUP):
    """The fastest of `repeats` calls of run(), in ms of this process's CPU time, after `warmup`
    untimed ones. CPU time (`time.process_time`), because on a shared machine the time spent
    waiting while other programs hold the cores is not run()'s cost; the fastest, as `timeit`
    advises, because what those programs still do to us (evicting our caches) only adds time."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        begin = time.process_time()
        run()
        times.append(time.process_time() - begin)
    return 1e3 * min(times)


# %% [markdown]
# ## 1. Autograd's tape, and what one node costs
#
# `autograd.grad(f)(x)` runs f on a *box* around x. Every `autograd.numpy` function is a
# *primitive*: called on a box, it computes its value with plain NumPy and records a node that
# holds its parents and a closure computing its VJP. The backward pass then sorts the nodes
# (`toposort`) and calls each VJP once. To count the nodes we run the same recording ourselves,
# with a node class that also keeps the name of its primitive. `trace`, `VJPNode` and `toposort`
# are autograd internals (autograd/tracer.py, core.py, util.py), not a public API: fine for
# looking, not for a library to lean on.

# %%
class NamedNode(VJPNode):
    """autograd's tape node, plus the name of the primitive that recorded it."""
    __slots__ = ["name"]

    def __init__(self, value, fun, args, kwargs, parent_argnums, parents):
        super().__init__(value, fun, args, kwargs, parent_argnums, parents)
        self.name = fun.__name__

    def initialize_root(self):
        super().initialize_root()
        self.name = "input"


def tape(fun, x):
    """The nodes autograd records for fun(x), counted by primitive: Counter({name: count}).
    The input itself is one node ("input"); every later node descends from it."""
    _, end_node = trace(NamedNode.new_root(), fun, x)
    return collections.Counter(node.name for node in toposort(end_node))


x = rng.standard_normal((BATCH_SIZE, 2))                     # a batch of 2D points
M = onp.array([[0.8, 0.6], [-0.6, 0.8]])                    # a rotation: the chain neither grows nor shrinks
swap = onp.array([1, 0])
OPERATIONS = {"x * 0.999": lambda x: x * 0.999,
              "x + 0.001": lambda x: x + 0.001,
              "np.tanh(x)": np.tanh,
              "np.dot(x, M)": lambda x: np.dot(x, M),
              "x[:, [1, 0]]": lambda x: x[:, swap]}


def chain(operation):
    """x -> sum(op(op(... op(x)))), CHAIN times op: a scalar, so it has a gradient."""
    def f(x):
        for _ in range(CHAIN):
            x = operation(x)
        return np.sum(x)
    return f


here = machine()
print(f"timed on {here['cpu']}, {here['cores']} cores, numpy {here['numpy']}, load average "
      f"{here['load_average_1min']:.1f}: times are this machine's, the ratios travel better")
print(f"a chain of {CHAIN} operations on x of shape {x.shape}:")
print(f"  {'operation':14s} {'nodes':>6s} {'NumPy alone':>12s} {'taped forward':>14s} {'forward + backward':>19s}")
per_node, chain_nodes = {}, {}
for label, operation in OPERATIONS.items():
    f = chain(operation)
    nodes = sum(tape(f, x).values())
    plain = 1e3 * fastest_ms(lambda: f(x)) / CHAIN                 # µs per operation
    taped = 1e3 * fastest_ms(lambda: trace(VJPNode.new_root(), f, x)) / nodes
    total = 1e3 * fastest_ms(lambda: grad(f)(x)) / nodes
    per_node[label], chain_nodes[label] = (plain, taped, total), nodes
    print(f"  {label:14s} {nodes:6d} {plain:9.1f} µs {taped:11.1f} µs {total:16.1f} µs")
typical = statistics.median(total / plain for plain, _, total in per_node.values())
print(f"this run: autograd's forward + backward cost {typical:.0f}x the NumPy arithmetic per operation "
      f"(median of the rows; a time of this machine, measured properly by python -m tinyflow.benchmark)")
farthest = max(chain_nodes.values(), key=lambda n: abs(n - (CHAIN + 2)))
claim.exact(f"nodes on the tape of a chain of {CHAIN} operations (the row farthest from {CHAIN} + 2)",
            farthest, CHAIN + 2, 0, fmt=".0f")

# %% [markdown]
# Each chain records exactly CHAIN + 2 nodes (the input, the operations and the final sum), on any
# machine. The times are your machine's own, and they move with its load: read them as an
# illustration of where the time goes. `python -m tinyflow.benchmark` measures the same table (its
# "per operation" rows) with NumPy and autograd taking turns, and the README gives its numbers on
# the machine this chapter was written on. There, as on any machine we know of, autograd's
# forward + backward per node cost several times the arithmetic of an elementwise operation on a
# batch of 512 two-dimensional points: a box, a node and a VJP closure on the way forward, then a
# lookup, a call and an addition of gradients on the way back (the backward pass also does the
# arithmetic of the VJP itself). Indexing with a list has one of the dearest backward passes: its
# VJP must allow repeated indices, so it adds into zeros with `np.add.at`.
#
# Only `tanh` can have arithmetic in the same league as the bookkeeping, and whether it does
# depends on the CPU: numpy has faster kernels for it on CPUs with AVX-512 than on those without
# (`NPY_DISABLE_CPU_FEATURES` switches them off, to compare on one machine). `python -c "import
# numpy; numpy.show_runtime()"` lists the SIMD extensions your numpy uses.
#
# So at these sizes a training step's time is set less by the arithmetic than by **how many
# nodes** it records. The cure is to record fewer: write a few operations that always come
# together as *one* primitive, with its VJP written by hand (until so few nodes are left that the
# arithmetic is most of the step: section 3 measures where that happens).
#
# ## 2. Backprop through one dense ReLU layer, by hand
#
# Take h = max(a, 0) with a = x W + b; x is (N, n_in), W (n_in, n_out), b (n_out,), and dh =
# dL/dh (N, n_out) is what the backward pass hands us. Then, one step at a time:
#
# - **ReLU.** dh_ij/da_ij is 1 where a_ij > 0 and 0 elsewhere, and h_ij > 0 exactly where
#   a_ij > 0, so da = dh * [h > 0]: we can read it off the output, no need to keep a.
# - **Weights.** a_ij = sum_k x_ik W_kj + b_j, so dL/dW_kj = sum_i x_ik da_ij: **dW = x^T da**.
# - **Inputs.** dL/dx_ik = sum_j da_ij W_kj: **dx = da W^T**.
# - **Bias.** b_j is added to every row, so its gradient sums over the batch: **db = sum_i da_i**.
#
# Each result has the shape of what it is the gradient of, a quick check on every formula.
# `primitive` makes a plain-NumPy function a node; `defvjp` gives one VJP maker per argument,
# each called as maker(output, *inputs) and returning the function dh -> gradient.

# %%
@primitive
def my_dense_relu(x, W, b):
    """h = max(x W + b, 0). Inside a primitive everything is a plain ndarray."""
    return onp.maximum(onp.dot(x, W) + b, 0.0)


defvjp(my_dense_relu,
       lambda h, x, W, b: lambda dh: onp.dot(dh * (h > 0), W.T),          # dx = da W^T
       lambda h, x, W, b: lambda dh: onp.dot(x.T, dh * (h > 0)),          # dW = x^T da
       lambda h, x, W, b: lambda dh: onp.sum(dh * (h > 0), axis=0))       # db = sum_i da_i


def plain_dense_relu(x, W, b):
    """The same layer as autograd.numpy expressions: three nodes (dot, add, maximum)."""
    return np.maximum(np.dot(x, W) + b, 0.0)


# %% [markdown]
# Two checks. Against autograd's gradient of the plain expression: for a random dh (the
# "cotangent"), both must give the same VJP, i.e. the same gradient of sum(dh * h), to rounding.
# Against central finite differences, (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps) for
# every entry e_i of (x, W, b), on a small layer: that checks the formulas themselves, not just
# that two programs agree.

# %%
def vjp_loss(layer, dh):
    """(x, W, b) -> sum(dh * layer(x, W, b)): its gradient is the layer's VJP applied to dh."""
    return lambda xWb: np.sum(dh * layer(*xWb))


xWb = (rng.standard_normal((BATCH_SIZE, HIDDEN[0])), rng.standard_normal(HIDDEN) / 8,
       rng.standard_normal(HIDDEN[1]))
dh = rng.standard_normal((BATCH_SIZE, HIDDEN[1]))                 # the cotangent: a random dL/dh
mine, autograds = grad(vjp_loss(my_dense_relu, dh))(xWb), grad(vjp_loss(plain_dense_relu, dh))(xWb)
vjp_vs_autograd = max(onp.max(onp.abs(g - h)) for g, h in zip(mine, autograds))
print(f"my_dense_relu vs autograd, x {xWb[0].shape}: max |difference| over dx, dW, db = {vjp_vs_autograd:.1e}")
claim.exact("my_dense_relu's VJP against autograd's: max |difference|", vjp_vs_autograd, 0, 1e-12)

small, unflatten_small = flatten((rng.standard_normal((16, 3)), rng.standard_normal((3, 5)),
                                  rng.standard_normal(5)))        # (x, W, b) as one vector of 68


def small_loss(theta):
    return vjp_loss(my_dense_relu, dh[:16, :5])(unflatten_small(theta))


eps = 1e-6
finite_diff = onp.array([(small_loss(small + eps * e) - small_loss(small - eps * e)) / (2 * eps)
                         for e in onp.eye(small.size)])
exact = grad(small_loss)(small)
vjp_vs_fd = onp.max(onp.abs(finite_diff - exact)) / onp.max(onp.abs(exact))
print(f"my_dense_relu vs central differences (eps = {eps:g}), {small.size} entries of (x, W, b): "
      f"max relative error {vjp_vs_fd:.1e}")
claim.exact("my_dense_relu's gradient against central differences: max relative error", vjp_vs_fd, 0, 1e-6)

# %% [markdown]
# Now the cost. The plain expression records three nodes (dot, add, maximum) and our primitive
# one; tinyflow's `dense_relu` is the same primitive, written so it computes `da` once, computes
# only the gradients autograd asks for (`defvjp_argnums`), and adds b and applies the ReLU in place.
# We time one forward pass with tape plus one backward pass, `make_vjp` then the VJP.

# %%
dense_relu_us, dense_relu_nodes = {}, {}
for label, layer in [("plain expression", plain_dense_relu), ("my_dense_relu", my_dense_relu),
                     ("tinyflow dense_relu", tf.dense_relu)]:
    f = lambda xWb: layer(*xWb)
    nodes = tape(f, xWb)
    ops = dense_relu_nodes[label] = sum(count for name, count in nodes.items() if name not in ("input", "container_take"))
    dense_relu_us[label] = 1e3 * fastest_ms(lambda: make_vjp(f)(xWb)[0](dh))
    print(f"  {label:20s} {ops} node(s) {dict(nodes)}: forward + backward {dense_relu_us[label]:.0f} µs")
saved = {label: 1 - us / dense_relu_us["plain expression"] for label, us in dense_relu_us.items()}
print(f"this run's time saved against the plain expression: my_dense_relu {saved['my_dense_relu']:.0%}, "
      f"tinyflow dense_relu {saved['tinyflow dense_relu']:.0%}")
claim.exact("nodes of the dense ReLU layer, plain expression", dense_relu_nodes["plain expression"], 3, 0, fmt=".0f")
claim.exact("nodes of the dense ReLU layer, my_dense_relu", dense_relu_nodes["my_dense_relu"], 1, 0, fmt=".0f")

# %% [markdown]
# ("container_take" is autograd reading x, W and b out of the tuple we differentiate; it is there
# in all three rows.) At (512, 64) x (64, 64) the arithmetic is no longer small, so one node
# instead of three saves only a part of the time, far from two thirds (the line above gives this
# run's share; on a busy machine a single timing can even come out the wrong way round).
# The (512, 1) and (512, 2) arrays that a 2D flow's couplings pass around cost little but
# bookkeeping (section 1), and there fusing saves nearly all of it.
#
# ## 3. A whole model on three rungs, from the same parameters
#
# The 16-block model of chapter 5, [coupling (64, 64) relu + LULinear] x 16, written three ways,
# each one rung up a ladder of fewer, larger primitives:
#
# 1. **Textbook**: every operation a node. It subclasses the library layers and writes each step
#    with autograd.numpy, as tinyflow itself did before its primitives: `x[:, index]`, `np.tanh`
#    for the soft clamp, `x * np.exp(s) + t`, `np.concatenate` then a reorder, and W = L U from
#    `tril`, `triu`, `exp`, `diag` and `dot`, inverted with `np.linalg.solve`.
# 2. **Readable primitives**: `tf.AffineCoupling(mask, fused=False)` and `tf.LULinear()`. The
#    coupling runs the chain its `forward` and `inverse` read as (tinyflow/coupling.py), each link
#    a small primitive with its VJP written beside it: `take_columns` for x_a and x_b, the MLP as
#    section 2's `dense_relu` twice and a `dense`, `take_columns` for s_raw and t, `soft_clamp`,
#    `affine_inverse`, `merge_columns`, and the log-det's sum and sign. LULinear is two primitives
#    (tinyflow/linear.py): `lu_linear`, the map with W = P L U built inside it, and `lu_log_det`.
# 3. **Fused**: `tf.AffineCoupling(mask)` as the library runs it by default, the whole layer
#    (conditioner, affine map and log-det) as *one* primitive, `coupling_step` in
#    tinyflow/coupling_backprop.py. Its backprop is section 2's carried through the affine map.
#    log_prob runs the inverse, x_b = (y_b - t) exp(-s) with log_det = -sum_b s, so given x_b' and
#    log_det' (' for a gradient):
#
#        y_b' = x_b' exp(-s),   t' = -y_b',   s' = -x_b' x_b - log_det',   s_raw' = s' (1 - (s / s_max)^2)
#
#    and [s_raw', t'] goes back through the MLP layer by layer with section 2's formulas
#    (dW = h^T da, db = sum_i da_i, dh = da W^T, da = dh [h > 0]); y_a' gathers its share of
#    the MLP input's gradient. The forward pass keeps its hidden activations and s in one buffer
#    for the backward pass, exactly what autograd would keep for the chain.
#
# All three read LULinear's packed parameter `LU` (strictly lower part = L, diagonal = log d,
# strictly upper part = U), so they take the very same parameters.

# %%
def textbook_mlp(params, x):
    """tinyflow's ReLU MLP as autograd.numpy: dot, add, maximum for each hidden layer."""
    for layer in params[:-1]:
        x = np.maximum(np.dot(x, layer["W"]) + layer["b"], 0.0)
    return np.dot(x, params[-1]["W"]) + params[-1]["b"]


class TextbookCoupling(tf.AffineCoupling):
    """AffineCoupling (ReLU conditioner) written with autograd.numpy only."""

    def s_t(self, params, x_a):
        h = textbook_mlp(params, x_a)
        n_b = len(self.index_b)
        return self.s_max * np.tanh(h[:, :n_b] / self.s_max), h[:, n_b:]

    def merge(self, part_a, part_b):
        unsort = onp.argsort(onp.concatenate([self.index_a, self.index_b]))
        return np.concatenate([part_a, part_b], axis=1)[:, unsort]       # back to the original order

    def forward(self, params, x):
        x_a = x[:, self.index_a]
        s, t = self.s_t(params, x_a)
        return self.merge(x_a, x[:, self.index_b] * np.exp(s) + t), np.sum(s, axis=1)

    def inverse(self, params, y):
        y_a = y[:, self.index_a]
        s, t = self.s_t(params, y_a)
        return self.merge(y_a, (y[:, self.index_b] - t) * np.exp(-s)), -np.sum(s, axis=1)


class TextbookLU(tf.LULinear):
    """LULinear (no permutation) written with autograd.numpy only, on the same packed LU."""

    def weight(self, params):
        LU = params["LU"]
        L = np.tril(LU, -1) + np.eye(len(LU))
        U = np.triu(LU, 1) + np.diag(np.exp(np.diag(LU)))
        return np.dot(L, U)

    def forward(self, params, x):
        log_det = np.sum(np.diag(params["LU"]))
        return np.dot(x, self.weight(params).T) + params["b"], log_det * np.ones(len(x))

    def inverse(self, params, y):
        x = np.linalg.solve(self.weight(params), (y - params["b"]).T).T
        return x, -np.sum(np.diag(params["LU"])) * np.ones(len(y))


class TextbookFlow(tf.Flow):
    """Flow, summing the layers' log-dets one addition at a time."""

    def log_prob(self, params, x):
        z, log_det = x, 0.0
        for layer, p in zip(reversed(self.layers), reversed(params["layers"])):
            z, layer_log_det = layer.inverse(p, z)
            log_det = log_det + layer_log_det
        return self.base.log_prob(params["base"], z) + log_det


def build(Flow, Coupling, Linear):
    layers = [layer for mask in tf.alternating_masks(2, NUM_BLOCKS)
              for layer in (Coupling(mask, hidden=HIDDEN, activation="relu"), Linear())]
    return Flow(tf.StandardNormal(2), layers)


flows = {"textbook": build(TextbookFlow, TextbookCoupling, TextbookLU),
         "primitives": build(tf.Flow, functools.partial(tf.AffineCoupling, fused=False), tf.LULinear),
         "fused": build(tf.Flow, tf.AffineCoupling, tf.LULinear)}
target = tf.UniformConditionalGaussian()

# %% [markdown]
# At init every conditioner's last layer is zero and every LU is zero, so most gradients are
# exactly zero and a wrong VJP could hide there. We move all parameters away from init first.

# %%
theta0, unflatten = flatten(flows["fused"].init(rng))
params = unflatten(theta0 + 0.05 * rng.standard_normal(theta0.shape))
batch = target.sample(rng, BATCH_SIZE)


def relative_difference(a, b):
    return onp.max(onp.abs(a - b)) / onp.max(onp.abs(b))


log_q = {name: flow.log_prob(params, batch) for name, flow in flows.items()}
flat = {name: tf.flat_loss_and_grad(tf.forward_kl(flow), params) for name, flow in flows.items()}
gradients = {name: loss_and_grad(theta, batch)[1] for name, (theta, _, loss_and_grad) in flat.items()}
print(f"{NUM_BLOCKS} blocks, {theta0.size} parameters, batch {BATCH_SIZE} "
      f"(largest |gradient| entry {onp.max(onp.abs(gradients['textbook'])):.2f})")
for name in ("primitives", "fused"):
    agree_log_prob = relative_difference(log_q[name], log_q["textbook"])
    agree_grad = relative_difference(gradients[name], gradients["textbook"])
    print(f"textbook vs {name}: log_prob max relative difference {agree_log_prob:.1e}, "
          f"forward-KL gradient max relative difference {agree_grad:.1e}")
    claim.exact(f"textbook vs {name}: log_prob, max relative difference", agree_log_prob, 0, 1e-12)
    claim.exact(f"textbook vs {name}: gradient, max relative difference", agree_grad, 0, 1e-12)

# %% [markdown]
# Same numbers on all three rungs; now the tape of one training step. `flat_loss_and_grad`, which
# `fit` uses, differentiates the loss as a function of one flat vector theta that holds every
# parameter, and reads each parameter array out of it with a `_leaf` node (tinyflow/leaves.py).
# The reads are *lazy*: an array becomes a node when a layer first looks it up, and a layer that
# asks for all of its parameters at once, as the fused coupling does, gets them as one slice of
# theta (a layer's arrays sit side by side there). `tinyflow.tape.traced_step` records that
# very function, with a node class of our choosing, and runs its backward pass once.
# `tinyflow.tape.RecordingNode` is section 1's `NamedNode` with what the next cell needs: the
# primitive, the values it was called with, and the gradient its VJP received.

# %%
steps = {name: list(toposort(traced_step(tf.forward_kl(flow), params, batch, RecordingNode)))
         for name, flow in flows.items()}
cost = {name: {"step_nodes": len(tape), "nodes": collections.Counter(node.name for node in tape)}
        for name, tape in steps.items()}
for name, measured in cost.items():
    print(f"  {name:10s} {measured['step_nodes']:4d} nodes per training step: "
          + ", ".join(f"{op} {k}" for op, k in measured["nodes"].most_common()))
print("parameter reads (_leaf nodes) per step: " + ", ".join(
      f"{name} {measured['nodes']['_leaf']} = {NUM_BLOCKS} x {measured['nodes']['_leaf'] // NUM_BLOCKS}"
      for name, measured in cost.items()))
print("nodes per step: " + " -> ".join(f"{name} {measured['step_nodes']}" for name, measured in cost.items()))
PER_BLOCK, REST = {"textbook": 49, "primitives": 22, "fused": 8}, {"textbook": 8, "primitives": 9, "fused": 9}
for name in cost:
    claim.exact(f"nodes per training step, {name}", cost[name]["step_nodes"],
                PER_BLOCK[name] * NUM_BLOCKS + REST[name], 0, fmt=".0f")

# %% [markdown]
# The counts are exact, the same on every machine and seed. Per block:
#
# - **textbook, 49**: 8 parameter reads (W and b of the MLP's three layers, LU and b) and 41
#   operations, from `__getitem__` and `dot` to the `add` that sums each layer's log-det.
# - **readable primitives, 22**: the same 8 reads and 14 primitives: 4 `take_columns`, 2
#   `dense_relu`, `dense`, `soft_clamp`, `affine_inverse`, `merge_columns`, `sum` and `negative`
#   (the coupling's log-det), `lu_linear` and `lu_log_det`.
# - **fused, 8**: 3 reads (the coupling's six arrays as one slice of theta, LU, b), `coupling_step`,
#   2 `take_columns` that split its (N, 3) output into the points and the log-det, `lu_linear` and
#   `lu_log_det`.
#
# Every step also records theta itself, the base's log-density (`power`, `sum`, `multiply`,
# `subtract`), the sum of the 32 log-dets (`add_all`, one node; the textbook adds one layer at a
# time, inside its per-block count), the addition of the base term, and the loss's `mean` and
# sign: 9 nodes, 8 for the textbook. So per step 49 x 16 + 8 = **792**, 22 x 16 + 9 = **361**
# and 8 x 16 + 9 = **137** nodes for the 16 blocks.

# %% [markdown]
# Then the time of a whole training step as `fit` runs it: a fresh batch, loss and gradient
# through `flat_loss_and_grad`, an Adam update (`tinyflow.benchmark.training_step`, which starts
# all three from the same `flow.init`: the textbook layers inherit it). To see what bounds each
# step we time its pieces too, on the tape we just recorded:
#
# - **the arithmetic alone**: every primitive's own NumPy function (`fun.fun`, what `primitive`
#   wrapped) on the values it was called with, then every VJP on the gradient it received, in
#   the order autograd ran them, with no boxes, no tape, no sorting and no adding up of gradients;
# - **the matrix products alone**: per coupling, per layer of its MLP, a = h W on the way forward
#   and dW = h^T da, db = 1^T da, dh = da W^T on the way back, at batch 512 (the LUs' 2 x 2
#   products are negligible).
#
# What is left of the step (the tape, the layers' Python around their primitives, drawing the
# batch, Adam) is the bookkeeping. `getrusage` counts the *minor page faults* of each step
# (section 4). Times are CPU time again, and the jobs take turns, so what other programs still
# cost us (caches) falls on all alike; we print medians and the fastest step. These are this
# run's times, an illustration: `python -m tinyflow.benchmark` measures the three steps taking
# turns (its "chapter 8" row, and the fused coupling against `fused=False` in its "fused" row),
# and the README gives the ratios it measured on the machine this chapter was written on.

# %%
def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def replay(tape):
    """The tape's arithmetic alone: (forward, backward), each a function of no arguments."""
    nodes = [node for node in reversed(tape) if node.fun is not None]     # in the order they ran

    def forward():
        for node in nodes:
            node.fun.fun(*node.args, **node.kwargs)

    def backward():
        for node in reversed(nodes):
            node.vjp(node.g)
    return forward, backward


def matrix_products(blocks, batch_size, sizes):
    """The couplings' matrix products alone, forward and backward, on random arrays of their shapes."""
    h = [rng.standard_normal((batch_size, n)) for n in sizes]             # h_0, the hidden layers, [s_raw, t]
    W = [rng.standard_normal((n_in, n_out)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    ones = onp.ones(batch_size)

    def run():
        for _ in range(blocks):
            for j in range(len(W)):                                       # a = h W
                onp.dot(h[j], W[j])
            for j in reversed(range(len(W))):                             # with da of a's shape
                onp.dot(h[j].T, h[j + 1]), onp.dot(ones, h[j + 1]), onp.dot(h[j + 1], W[j].T)
    return run


jobs = {name: {"step": training_step(flow, target.sample, BATCH_SIZE, seed=SEED),
               "arithmetic": replay(steps[name])} for name, flow in flows.items()}
products = matrix_products(NUM_BLOCKS, BATCH_SIZE, (1, *HIDDEN, 2))
for name, measured in cost.items():
    theta, _, loss_and_grad = flat[name]
    jobs[name]["loss_and_grad"] = functools.partial(loss_and_grad, theta, batch)
    measured.update(step=[], loss_and_grad=[], forward=[], backward=[], faults=0)
products_ms = []
for i in range(WARMUP + REPEATS):
    for name, job in jobs.items():
        begin, faults_before = time.process_time(), minor_faults()
        job["step"]()
        after_step, faults = time.process_time(), minor_faults() - faults_before
        job["loss_and_grad"]()
        after_gradient = time.process_time()
        job["arithmetic"][0]()
        after_forward = time.process_time()
        job["arithmetic"][1]()
        if i >= WARMUP:
            cost[name]["step"].append(1e3 * (after_step - begin))
            cost[name]["loss_and_grad"].append(1e3 * (after_gradient - after_step))
            cost[name]["forward"].append(1e3 * (after_forward - after_gradient))
            cost[name]["backward"].append(1e3 * (time.process_time() - after_forward))
            cost[name]["faults"] += faults / REPEATS
    begin = time.process_time()
    products()
    if i >= WARMUP:
        products_ms.append(1e3 * (time.process_time() - begin))
products_ms = statistics.median(products_ms)
for name, measured in cost.items():
    for part in ("step", "loss_and_grad", "forward", "backward"):
        measured[f"{part}_ms"] = statistics.median(measured[part])
    measured["arithmetic_ms"] = measured["forward_ms"] + measured["backward_ms"]
    measured["per_node_us"] = 1e3 * (measured["loss_and_grad_ms"] - measured["arithmetic_ms"]) / measured["step_nodes"]
    print(f"  {name:10s} step {measured['step_ms']:5.1f} CPU ms (median of {REPEATS}; fastest "
          f"{min(measured['step']):5.1f}), {measured['faults']:3.0f} minor page faults per step; loss and gradient "
          f"{measured['loss_and_grad_ms']:5.1f} ms, their arithmetic alone {measured['arithmetic_ms']:5.1f} ms "
          f"(forward {measured['forward_ms']:4.1f}, backward {measured['backward_ms']:4.1f}): "
          f"{measured['per_node_us']:3.0f} µs of bookkeeping per node")
print(f"  matrix products alone, {NUM_BLOCKS} couplings x 12: {products_ms:4.1f} CPU ms (median of {REPEATS})")
fused = cost["fused"]
print(f"this run, the fused step: arithmetic {fused['arithmetic_ms'] / fused['step_ms']:.0%} of it (matrix products "
      f"{products_ms / fused['step_ms']:.0%}), tape and the layers' Python "
      f"{(fused['loss_and_grad_ms'] - fused['arithmetic_ms']) / fused['step_ms']:.0%}, drawing the batch and Adam "
      f"{(fused['step_ms'] - fused['loss_and_grad_ms']) / fused['step_ms']:.0%}")
print("this run, the step's time against the fused one (ratios of medians; the benchmark measures them): "
      + ", ".join(f"{name} {measured['step_ms'] / fused['step_ms']:.2f}x" for name, measured in cost.items()))

# %% [markdown]
# The milliseconds move from run to run with whatever else the machine runs; the ratios move much
# less, because the jobs take turns. Read the lines above from the bottom rung up:
#
# - The **textbook** step spends much of its time on bookkeeping for its 792 nodes, and its
#   arithmetic is the dearest too: the VJP of `x[:, index]` adds into zeros with `np.add.at`
#   (section 1), and the LU's `solve`, `diag`s and transposes have backward passes of their own.
# - The **readable primitives** cut the nodes by more than half, and the arithmetic with them.
# - The **fused** step records 137 nodes and does a little less arithmetic again (its buffers are
#   written in place). Its *arithmetic* is now most of the step, and the matrix products are well
#   under half of that arithmetic: the rest is elementwise work on the (512, 64) activations (the
#   bias additions, the ReLU and its mask on the way back, tanh and exp of s) and the LUs' small
#   solves. The tape and the layers' Python (each layer checks its inputs and reads its
#   parameters) are the smaller part, tens of µs per node. Drawing the batch and Adam's update
#   are a few percent.
#
# So with the nodes this few, what bounds the fused step at batch 512 is the arithmetic itself, and
# not even mostly the matrix products: fusing further could save at most the bookkeeping that is
# left. A larger batch makes the arithmetic's share, and the products' within it, larger still.
#
# The primitives also keep fewer intermediates alive, as the next section shows.
#
# ## 4. Memory: what the tape keeps, and what glibc gives back
#
# Every node keeps what its VJP needs (its inputs, often its output) until the backward pass has
# used it, so at the end of the forward pass the intermediates of the whole step are alive at
# once. `tinyflow.benchmark.peak_memory_mib` measures that peak with `tracemalloc`.

# %%
peak = {name: peak_memory_mib(job["step"]) for name, job in jobs.items()}
activations_mib = NUM_BLOCKS * sum(HIDDEN) * BATCH_SIZE * 8 / 2 ** 20
for name, mib in peak.items():
    print(f"  {name:10s} peak memory of one training step: {mib:5.1f} MiB")
print(f"  the couplings' hidden activations alone: {NUM_BLOCKS} x {sum(HIDDEN)} x {BATCH_SIZE} float64 = "
      f"{activations_mib:.1f} MiB")
claim.bound("peak memory of a training step, primitives / textbook", peak["primitives"] / peak["textbook"],
            at_most=0.6, fmt=".2f")
claim.bound("peak memory of a training step, fused / textbook", peak["fused"] / peak["textbook"],
            at_most=0.6, fmt=".2f")

# %% [markdown]
# Both primitive rungs need little more than half the textbook's memory at its peak (these ratios
# depend on the model and the numpy build, not on the seed; the text's bounds leave room for other
# builds). Fusing saves little more: what both keep is mostly the hidden activations, which any
# backward pass through the MLPs needs (the line above gives their size).

# %% [markdown]
# The backward pass then frees it all, and glibc's `malloc` may hand the freed memory back to
# the system. The next step asks for it again, and the kernel maps it back in one 4 KiB page at
# a time: a *minor page fault* per page, each costing kernel time. glibc returns memory at the
# top of its heap once more than its *trim threshold* is free there, and that threshold starts
# at 128 KiB; it rises only when a large block that glibc got straight from the system
# (`mmap`) is freed: to twice that block's size (mallopt(3), "dynamic mmap threshold").
# `tinyflow.memory.keep_freed_memory` allocates and frees one 16 MiB array for exactly that
# reason, so the ~10 MiB a step frees stays with the process. `Flow()` calls it when a flow is
# built (and `flat_loss_and_grad`, which `fit` uses, once more), so every training loop over a
# flow keeps its memory: `fit`'s, or one you write around `autograd.value_and_grad`.
# To see the difference we start two fresh Python processes, one as the library runs and one
# in which `tinyflow.memory.keep_freed_memory` is replaced by a function that does nothing
# *before* the flow is built (`Flow()` would otherwise call it), and let each count its page
# faults and its kernel time (`ru_stime`) over 20 steps of the 16-block model as the library
# runs it (fused).
# Both start without glibc's `MALLOC_..._` variables (such as `MALLOC_TOP_PAD_`), which would fix
# the thresholds instead, so the second process runs with glibc's defaults.

# %%
PROBE = """
import resource, statistics, sys, time
import tinyflow as tf
from tinyflow.benchmark import training_step
if sys.argv[1] == "off":                            # before Flow() below, which would call it
    tf.memory.keep_freed_memory = lambda: None
layers = [layer for mask in tf.alternating_masks(2, 16)
          for layer in (tf.AffineCoupling(mask, hidden=(64, 64), activation="relu"), tf.LULinear())]
step = training_step(tf.Flow(tf.StandardNormal(2), layers), tf.UniformConditionalGaussian().sample, 512)
for _ in range(3):
    step()
ms, before = [], resource.getrusage(resource.RUSAGE_SELF)
for _ in range({steps}):
    begin = time.process_time()
    step()
    ms.append(1e3 * (time.process_time() - begin))
after = resource.getrusage(resource.RUSAGE_SELF)
print((after.ru_minflt - before.ru_minflt) / {steps}, 1e3 * (after.ru_stime - before.ru_stime) / {steps},
      statistics.median(ms), min(ms))
"""
if args.quick:
    print("(the two fresh processes run in the full run only)")
else:
    probes = {}
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env["OPENBLAS_NUM_THREADS"] = "1"     # what Flow() asks for anyway (threads.py); a second BLAS thread nearly doubled the faults
    for label, switch in [("keep_freed_memory", "on"), ("glibc's defaults", "off")]:
        result = subprocess.run([sys.executable, "-c", PROBE.format(steps=20), switch], env=env,
                                capture_output=True, text=True, check=True)
        probes[label] = [float(value) for value in result.stdout.split()]
        faults, kernel_ms, step_ms, fastest = probes[label]
        print(f"  fresh process, {label:20s}: {faults:5.0f} minor page faults and {kernel_ms:4.1f} ms "
              f"of kernel time per step; step {step_ms:4.1f} CPU ms (median; fastest {fastest:4.1f})")
    faults, kernel_ms, step_ms, _ = probes["glibc's defaults"]
    print(f"this run, with glibc's defaults: {1e3 * kernel_ms / max(faults, 1):.1f} µs of kernel time per fault, "
          f"kernel time {kernel_ms / step_ms:.0%} of the median step")
    claim.bound("minor page faults per step, keep_freed_memory", probes["keep_freed_memory"][0], at_most=10, fmt=".0f")
    claim.bound("minor page faults per step, glibc's defaults", probes["glibc's defaults"][0], at_least=500, fmt=".0f")

# %% [markdown]
# With glibc's defaults the process takes at least 500 faults per step, against at most 10 with
# `keep_freed_memory` (the counts depend on glibc and numpy, not on the seed). Each fault costs
# microseconds of kernel time, so together they are a visible share of the step's CPU time; the
# median step itself need not come out slower on every run, because the kernel time is smaller
# than what a step's time moves with the machine's load, so the kernel time is the number to
# read. The printed lines give your allocator's count and cost.
#
# ## 5. The picture
#
# Left: the cost of one operation, NumPy alone against autograd's forward and backward per node.
# Middle: the nodes of one training step on each rung, by primitive. Right: the time of one step
# on each rung, split into the matrix products, the rest of the arithmetic, and the bookkeeping.

# %%
fig, (ax_op, ax_nodes, ax_ms) = plt.subplots(1, 3, figsize=(16, 6.5))
rows = onp.arange(len(per_node))
ax_op.barh(rows - 0.2, [v[0] for v in per_node.values()], 0.4, color="0.6", label="NumPy alone, per operation")
ax_op.barh(rows + 0.2, [v[2] for v in per_node.values()], 0.4, color="C3",
           label="autograd: forward + backward, per node")
ax_op.set(yticks=rows, yticklabels=list(per_node), xlabel="CPU µs",
          title=f"one operation on a ({BATCH_SIZE}, 2) array",
          xlim=(0, 1.6 * max(v[2] for v in per_node.values())))
ax_op.invert_yaxis()
ax_op.legend(loc="upper right", fontsize=8)

names = list(cost)
counts = {name: collections.Counter(measured["nodes"]) for name, measured in cost.items()}
shown = list(dict.fromkeys([op for op, _ in counts["textbook"].most_common(6)] +        # the rest: "other"
                           [op for name in names[1:] for op, k in counts[name].most_common() if k >= NUM_BLOCKS]))
for name in names:
    counts[name]["other"] = sum(k for op, k in counts[name].items() if op not in shown)
rows = onp.arange(len(shown) + 1)
for offset, name in zip((-0.27, 0, 0.27), names):
    ax_nodes.barh(rows + offset, [counts[name][op] for op in shown + ["other"]], 0.27,
                  label=f"{name}: {cost[name]['step_nodes']} nodes")
ax_nodes.set(yticks=rows, yticklabels=shown + ["other"], xlabel="nodes recorded by this primitive",
             title="the tape of one training step")
ax_nodes.invert_yaxis()
ax_nodes.legend(loc="upper right", fontsize=8)

top = 1.4 * max(measured["step_ms"] for measured in cost.values())      # a step slowed far more by the load: at the top
for i, name in enumerate(names):
    measured = cost[name]
    parts = [(products_ms, "arithmetic: the matrix products", dict(color="C0")),
             (measured["arithmetic_ms"] - products_ms, "arithmetic: the rest", dict(color="C0", alpha=0.4)),
             (measured["loss_and_grad_ms"] - measured["arithmetic_ms"], "tape and the layers' Python",
              dict(color="white", edgecolor="k", hatch="//")),
             (measured["step_ms"] - measured["loss_and_grad_ms"], "drawing the batch, Adam", dict(color="0.8"))]
    bottom = 0.0
    for height, label, style in parts:
        ax_ms.bar(i, height, 0.6, bottom=bottom, label=label if i == 0 else None, **style)
        bottom += height
    x_step, y_step = i + rng.uniform(-0.2, 0.2, len(measured["step"])), onp.array(measured["step"])
    beyond = y_step > top
    ax_ms.scatter(x_step[~beyond], y_step[~beyond], s=6, color="k",
                  label="each timed step (^: beyond the top)" if i == 0 else None)
    ax_ms.scatter(x_step[beyond], onp.full(beyond.sum(), top), s=30, color="k", marker="^", clip_on=False)
ax_ms.set(xticks=range(len(names)), ylabel="CPU ms per training step", ylim=(0, top),
          xticklabels=[f"{name}\n{cost[name]['step_nodes']} nodes\nmedian {cost[name]['step_ms']:.1f} ms"
                       for name in names],
          title=f"{NUM_BLOCKS} x [coupling + LU], batch {BATCH_SIZE}: one step of fit")
ax_ms.legend(fontsize=8)
fig.suptitle(f"timed on {here['cpu']}, {here['cores']} cores, numpy {here['numpy']}, "
             f"load average {here['load_average_1min']:.1f}")
fig.tight_layout()
savefig(fig, "ch08_step_cost.png", args.figures_dir, measured=True)
print(f"chapter ran in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Summary
#
# - Autograd records one node per primitive operation, forward and backward, and on a batch of
#   512 2D points its bookkeeping costs several times the arithmetic: your run prints your
#   machine's ratio, and `python -m tinyflow.benchmark` measures it with the two taking turns.
# - A VJP maps dL/d(output) to dL/d(inputs). For h = max(x W + b, 0): da = dh * [h > 0],
#   dx = da W^T, dW = x^T da, db = sum_i da_i. `primitive` plus `defvjp` make it one node.
# - Check a hand-written VJP twice: against autograd on the plain expression (the same numbers
#   within 1e-12) and against central finite differences (the formulas themselves, within 1e-6
#   relative), away from init.
# - Fusing climbs a ladder. A training step of the chapter-5 model records 792 nodes with every
#   operation a node (textbook, 49 per block + 8), 361 with the readable primitives
#   (`fused=False`: dense + activation, column picks, the clamp, the affine map, LULinear's map
#   and log-det, the sum of the log-dets; 22 per block + 9) and 137 with each coupling one
#   primitive whose backprop is written out (`coupling_step`, the library's default; 8 per
#   block + 9, its six parameter arrays read as one slice of theta). Counts: the same on every
#   machine and seed. All three give the same log_prob and gradient (relative differences within
#   1e-12), and both primitive rungs need at most 0.6 of the textbook's peak memory, most of it
#   the hidden activations any backward pass needs.
# - With 137 nodes, the fused step is bound by its arithmetic (replay the tape in plain NumPy to
#   see it), more of it elementwise work on (512, 64) arrays than matrix products; the bookkeeping
#   left is the smaller part. The steps' ratios are measured by `python -m tinyflow.benchmark` on
#   your machine (the README gives the ones it measured on ours).
# - The tape keeps every intermediate until the backward pass, and glibc would hand the freed
#   memory back after each step for the next step to page-fault in again: at least 500 faults
#   per step with glibc's defaults, against at most 10 with `tinyflow.memory.keep_freed_memory`,
#   which `Flow()` calls so that every training loop over a flow gets it.
#
# ## Exercises
#
# 1. Write `my_dense_tanh`, h = tanh(x W + b), with da = dh * (1 - h^2), and check it both ways.
#    Why is it better to compute tanh' from the saved output h than from x W + b?
# 2. Rewrite `my_dense_relu` with `defvjp_argnums` so that `da` is computed once and only the
#    gradients autograd asks for are computed (compare with `tinyflow/mlp.py`). Differentiate a
#    loss with respect to W only and count how many `np.dot` calls each version makes.
# 3. Break the VJP on purpose, one bug at a time: `dh * (h >= 0)` in dx; `W` instead of `W.T`
#    in dx; `axis=1` in db. Which of the two checks catches each, and with what error? The
#    second bug runs without complaint when W is square (as in the (64, 64) check): why is a
#    check on non-square shapes worth having?
# 4. `tape` the training step of chapter 4's IAF (`AffineAutoregressive`) and find its most common
#    nodes. Which two or three operations would you fuse next, and how many nodes would that save?
# 5. Derive the fused coupling's backprop in the forward direction, y_b = x_b exp(s) + t with
#    log_det = sum_b s, and compare with the docstring of `tinyflow/coupling_backprop.py`. Then
#    check it as this chapter checked the inverse: `sample_and_log_prob` runs the forward
#    direction, so compare the reverse-KL gradient (`tf.reverse_kl`) of the default coupling with
#    that of `fused=False` on the same parameters and the same noise.
#
# ## Notes on the numbers
#
# This chapter's claims are counts and identities (exact, with their tolerance), and four bounds
# that depend on the numpy build and glibc rather than on the seed: the two peak-memory ratios and
# the page faults per step. They were set on seeds 0-19 (every count, ratio and fault count came
# out the same on all twenty runs; only the finite-difference error, 1e-10 to 7.6e-10, and the
# gradient differences, at most 7.5e-15, moved) and checked on seeds 20-29 with
# `python chapters/seeds.py ch08 --seeds 20-29 --check`: 160 values, 0 outside the text's
# claims (and on seeds 20-22 with numpy's AVX-512 kernels on and off, 96 values, 0 outside). The
# memory bounds leave room for other builds: on the machine they were measured on, the readable
# primitives' peak was 0.57 of the textbook's and the fused step's 0.55 (10.8 MiB, of which 8 MiB
# are the hidden activations), and glibc 2.36's defaults cost 1,872 to 1,968 faults per step
# against 2 with `keep_freed_memory`. Before the coupling was fused and LULinear made two
# primitives, the "primitives" rung recorded 26 nodes per block + 9 (425 for 16 blocks) and its
# peak was 0.54 of the textbook's.
#
# Times and time ratios are no claims: they move with the CPU and the load, so the chapter prints
# its own run's as an illustration and `python -m tinyflow.benchmark` measures them (the README
# states what it measured, on which machine and at which load). For the record, on the 2-core
# AVX-512 Xeon this chapter was written on, with other work holding the load average near 20
# (CPU time, the seed-0 full run behind figures/ch08_step_cost.png): the fused step took 19.0 ms,
# its arithmetic alone 12.5 ms (66%), of which the matrix products 5.1 ms (27% of the step); the
# tape and the layers' Python 5.4 ms (29%, 40 µs per node); drawing the batch and Adam 1.1 ms
# (6%). The readable primitives' step took 1.18 times as long as the fused one, the textbook's
# 2.06 times.
#
# Re-checked after the speed work of issue 19 (the faster fused coupling and LULinear): the same
# maths rounded differently, so every run follows another trajectory, as it would on another
# machine. On fresh seeds 40-44 (`python chapters/seeds.py ch08 --seeds 40-44 --check`): 80 values,
# 0 outside, every frequency as stated.

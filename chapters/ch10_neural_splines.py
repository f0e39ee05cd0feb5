# %% [markdown]
# # Chapter 10: neural spline flows
#
# **Goal.** Replace the affine map inside a coupling layer, $y_b = x_b e^{s} + t$, by a monotone
# *rational-quadratic spline* whose knots the conditioner chooses (Durkan, Bekasov, Murray &
# Papamakarios 2019, "Neural spline flows"). First look at one spline in 1D: its knots, its
# slope, its closed-form inverse and its log-determinant. Then train spline couplings and affine
# couplings with the same number of parameters for the same number of steps on two targets whose
# densities we know exactly, and compare their KL divergences.
#
# **Key equation.** In bin $k$, with knots $(x_k, y_k)$, bin width $w$, height $h$, slope
# $s = h/w$, knot derivatives $d_k, d_{k+1}$ and $\xi = (x - x_k)/w \in [0, 1]$:
#
# $$g(x) = y_k + h\,\frac{s\xi^2 + d_k\,\xi(1-\xi)}{s + (d_{k+1} + d_k - 2s)\,\xi(1-\xi)},
# \qquad
# g'(x) = \frac{s^2\big(d_{k+1}\xi^2 + 2s\,\xi(1-\xi) + d_k(1-\xi)^2\big)}{\big(s + (d_{k+1} + d_k - 2s)\,\xi(1-\xi)\big)^2}.$$
#
# Every $d_k > 0$ and $s > 0$ make $g' > 0$, so $g$ is strictly increasing, hence invertible; and
# $g(x) = y$ is a quadratic in $\xi$, so the inverse is a closed-form root. Outside $[-B, B]$ the
# map is the identity.
#
# **Builds on.** Chapter 3 (`AffineCoupling`, `alternating_masks`), chapter 5 (forward KL with a
# warm-up + cosine schedule and gradient clipping; held-out NLL against the entropy, paired KL),
# chapter 6 (`GaussianMixture`, reverse KL on U1–U4, section 3 here) and chapter 8 (why a map
# written as one autograd primitive makes a cheaper training step).
#
# **Introduces.** `tinyflow/spline.py` (`RationalQuadraticSpline`; the knots, and the map written
# out with autograd.numpy), `tinyflow/spline_backprop.py` (the same map as one primitive with its
# backprop), `tinyflow/spline_coupling.py` (`SplineCoupling`), `tinyflow/spline_autoregressive.py`
# (`SplineAutoregressive`), and the target `Checkerboard` in `tinyflow/targets.py`.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np

import tinyflow
from tinyflow.plotting import chapter_args, grid, savefig

args = chapter_args(__doc__ or "Chapter 10: neural spline flows")
claim = tinyflow.claims(quick=args.quick)   # prints a result beside what this text states about it

SEED = args.seed
# section 1: one spline in 1D
NUM_BINS_1D, BOUND_1D = 8, 3.0
NUM_FINE = 2_001 if args.quick else 20_001   # grid points behind the round-trip numbers
# section 2: forward KL, spline couplings against affine couplings
NUM_BINS, BOUND = 16, 4.5                   # the checkerboard lives on [-4, 4]^2, inside [-B, B]^2
SPLINE_LAYERS, SPLINE_HIDDEN = 4, (32, 32)  # 4 x SplineCoupling, conditioner 1 -> 32 -> 32 -> 47
AFFINE_LAYERS, AFFINE_HIDDEN = 8, (34, 34)  # 8 x AffineCoupling, 1 -> 34 -> 34 -> 2: as many parameters
ACTIVATION = "relu"
NUM_STEPS = 20 if args.quick else 600       # the same for both flows
LEARNING_RATE = {"affine": 2e-2, "spline": 6e-2}   # the peak of the schedule: each flow's best
SCHEDULE, WARMUP = "cosine", 5 if args.quick else 50
CLIP_NORM = 10.0
BATCH_SIZE = 256                            # fresh samples of the target every step
NUM_EVAL = 2_000 if args.quick else 100_000  # held-out points behind each report
NUM_SAMPLES = 2_000 if args.quick else 50_000   # flow samples behind each mass-outside number
GRID = 50 if args.quick else 200            # pixels per side of each density panel
LIM = (-5.0, 5.0)                           # the plotting window, both axes
RADIUS, SIGMA, NUM_MODES = 3.0, 0.3, 8      # the ring: 8 Gaussians of sd 0.3 on a circle of radius 3
# One generator per purpose, so changing one never changes what another draws: [SEED, 0] the 1D
# spline, [SEED, 1, ...] flow samples, [SEED, 2, ...] held-out points, [SEED, 3] to [SEED, 6]
# the four fits.
# (Section 3 uses streams of its own, [SEED, 10 + ...].)
spline_rng = np.random.default_rng([SEED, 0])

# %% [markdown]
# ## 1. The spline in 1D
#
# One coordinate's spline has $3K - 1$ unconstrained numbers $\theta = [\theta_w, \theta_h, \theta_d]$.
# A softmax turns $\theta_w$ into $K$ bin widths that sum to $2B$ and $\theta_h$ into $K$ heights
# that sum to $2B$; their cumulative sums, started at $-B$, are the knots $x_0 = -B < x_1 < \dots <
# x_K = B$ and $y_0 = -B < \dots < y_K = B$. A softplus turns $\theta_d$ into the $K - 1$ interior
# derivatives $d_1, \dots, d_{K-1} > 0$; the end derivatives are fixed, $d_0 = d_K = 1$, so that
# the slope does not jump where the spline meets the identity tails. Two small floors, written
# in `spline.py`'s docstring, keep every bin at least $10^{-3}$ of $2B$ wide and high and every
# derivative at least $10^{-3}$:
#
# $$w_k = m + (1 - Km)\,\mathrm{softmax}(\theta_w)_k, \qquad
# d_k = m + \mathrm{softplus}(\theta_{d,k} + c), \quad c = \log(e^{1 - m} - 1),\ m = 10^{-3}.$$
#
# The shift $c$ makes $\theta = 0$ the identity (equal bins, every $d_k = 1$); a conditioner whose
# last layer starts at zero therefore starts the flow at the identity.
#
# We draw $\theta$ at random, compute the knots *here*, from these formulas, and check that
# `RationalQuadraticSpline`, which has its own copy of them, passes through them with the slopes
# they say.

# %%
K, B = NUM_BINS_1D, BOUND_1D
m = 1e-3                                             # MIN_BIN = MIN_DERIVATIVE in spline.py
layer = tinyflow.RationalQuadraticSpline(num_bins=K, bound=B)
params = {"theta": spline_rng.standard_normal((1, 3 * K - 1))}   # one dimension


def softmax(a):
    e = np.exp(a - a.max())
    return e / e.sum()


def softplus(a):
    return np.logaddexp(0.0, a)


theta_w, theta_h, theta_d = np.split(params["theta"][0], [K, 2 * K])
x_knots = np.concatenate([[-B], -B + 2 * B * np.cumsum(m + (1 - K * m) * softmax(theta_w))])
y_knots = np.concatenate([[-B], -B + 2 * B * np.cumsum(m + (1 - K * m) * softmax(theta_h))])
d_knots = np.concatenate([[1.0], m + softplus(theta_d + np.log(np.expm1(1 - m))), [1.0]])


def g(x):
    """The layer on a 1D array: (g(x), log g'(x))."""
    y, log_det = layer.forward(params, x[:, None])
    return y[:, 0], log_det


def g_inverse(y):
    """(g^-1(y), log |d g^-1 / dy|) by the layer's closed form."""
    x, log_det = layer.inverse(params, y[:, None])
    return x[:, 0], log_det


y_at_knots, log_slope_at_knots = g(x_knots)
print(f"K = {K} bins on [-{B:g}, {B:g}]; knots x_k = {np.round(x_knots, 3).tolist()}")
print(f"                          y_k = {np.round(y_knots, 3).tolist()}")
print(f"derivatives at the knots d_k = {np.round(d_knots, 3).tolist()}")
print(f"the layer at the knots: max |g(x_k) - y_k| = {np.max(np.abs(y_at_knots - y_knots)):.1e}, "
      f"max |g'(x_k) - d_k| = {np.max(np.abs(np.exp(log_slope_at_knots) - d_knots)):.1e}")
x_zero = np.linspace(-2 * B, 2 * B, 1001)
y_zero, log_det_zero = layer.forward(layer.init(spline_rng, 1), x_zero[:, None])
print(f"theta = 0: max |g(x) - x| = {np.max(np.abs(y_zero[:, 0] - x_zero)):.1e}, "
      f"max |log g'(x)| = {np.max(np.abs(log_det_zero)):.1e} (the identity)")

# %% [markdown]
# **Inside the bins.** The map is monotone, so the round trip $g^{-1}(g(x))$ should give $x$ back
# to rounding error, and the inverse's log-determinant should be minus the forward one at the
# same point. We check both on a fine grid that reaches past $\pm B$ into the tails, and the
# log-slope against a central finite difference of $g$ itself.
#
# **At the bound.** Inside, the slope at $x_K = B$ is $d_K = 1$; outside, the identity has slope
# 1. So $g$ is not only continuous at $\pm B$ (the knots are pinned there) but has a continuous
# first derivative: we print one-sided difference quotients on both sides. (The second
# derivative does jump at $\pm B$ and at every knot: the spline is $C^1$, not $C^2$.)

# %%
x_fine = np.linspace(-1.5 * B, 1.5 * B, NUM_FINE)
y_fine, log_slope = g(x_fine)
x_back, log_det_back = g_inverse(y_fine)
print(f"{NUM_FINE:,} points in [-{1.5 * B:g}, {1.5 * B:g}]:")
claim.exact("round trip, max |g^-1(g(x)) - x|", np.max(np.abs(x_back - x_fine)), 0, 1e-11)
claim.exact("inverse log-det, max |log g'(x) + log|dg^-1/dy|(g(x))|", np.max(np.abs(log_slope + log_det_back)),
            0, 1e-10)
print(f"smallest increment g(x_(i+1)) - g(x_i) on the grid: {np.diff(y_fine).min():.2e} > 0 "
      f"(strictly increasing); slope range {np.exp(log_slope).min():.3f} to {np.exp(log_slope).max():.3f}")
h_fd = 1e-6
finite_difference = np.log((g(x_fine + h_fd)[0] - g(x_fine - h_fd)[0]) / (2 * h_fd))
away = np.min(np.abs(x_fine[:, None] - x_knots[None, :]), axis=1) > 10 * h_fd
print(f"max |log g'(x) - log of the central difference (h = {h_fd:g})| = "
      f"{np.max(np.abs(log_slope - finite_difference)[away]):.1e} on the points farther than 10 h from a knot "
      f"(across a knot g'' jumps, and the difference quotient errs by about h |jump|)")
h_side = 1e-6
for edge in (-B, B):
    at = np.array([edge - h_side, edge, edge + h_side])
    values = g(at)[0]
    print(f"slope at x = {edge:+g}: from the left {(values[1] - values[0]) / h_side:.4f}, "
          f"from the right {(values[2] - values[1]) / h_side:.4f}; "
          f"log g' just inside {g(np.array([edge - np.sign(edge) * 1e-9]))[1][0]:.1e}, "
          f"just outside {g(np.array([edge + np.sign(edge) * 1e-9]))[1][0]:.1e}")

# %% [markdown]
# **What one spline does to a density.** Push $z \sim N(0, 1)$ through $g$: the density of
# $x = g(z)$ is $q(x) = \varphi(g^{-1}(x))\,|dg^{-1}/dx|$, the change of variables of chapter 1,
# evaluated with the closed-form inverse and its log-determinant. Where $g$ is steep it spreads
# mass thin; where it is flat it piles mass up. One layer can thus turn one bump into several,
# which no affine map $x = e^s z + t$ can do. A histogram of samples checks the formula.

# %%
def q_of_x(x):
    z, log_det = g_inverse(x)
    return np.exp(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi) + log_det)


x_plot = np.linspace(-1.5 * B, 1.5 * B, 1201)
q_plot = q_of_x(x_plot)
q_fine = q_of_x(x_fine)
q_mass = 0.5 * np.sum((q_fine[1:] + q_fine[:-1]) * np.diff(x_fine))
print(f"integral of q over [-{1.5 * B:g}, {1.5 * B:g}] (trapezoid rule): {q_mass:.6f}; g maps this window onto "
      f"itself, so it must hold N(0, 1)'s mass there, erf({1.5 * B:g} / sqrt 2) = {math.erf(1.5 * B / math.sqrt(2)):.6f}")
x_samples = g(spline_rng.standard_normal(NUM_EVAL))[0]

fig, axes = plt.subplots(1, 5, figsize=(21, 4), constrained_layout=True)
x_line = x_plot                                    # 1201 points are plenty for a line
y_line, log_slope_line = g(x_line)
tails = np.abs(x_line) > B
for ax in axes[:4]:
    for edge in (-B, B):
        ax.axvline(edge, color="gray", lw=0.6, ls=":")
ax = axes[0]
ax.plot(x_line, np.where(tails, np.nan, y_line), color="C0", label="g(x) on [-B, B]")
ax.plot(x_line, np.where(tails, y_line, np.nan), color="C1", label="identity tails")
ax.plot(x_line, x_line, color="gray", lw=0.6, ls="--", label="y = x")
ax.plot(x_knots, y_knots, "ko", ms=4, label="knots (x_k, y_k)")
ax.set_title("the spline g"), ax.set_xlabel("x"), ax.set_ylabel("y"), ax.legend(fontsize=8)
ax = axes[1]
ax.plot(x_line, np.exp(log_slope_line), color="C0", label="g'(x)")
ax.plot(x_knots, d_knots, "ko", ms=4, label="d_k at the knots")
ax.axhline(1, color="gray", lw=0.6, ls="--")
ax.set_title("slope g'(x): continuous, 1 at and beyond ±B"), ax.set_xlabel("x"), ax.legend(fontsize=8)
ax = axes[2]
y_grid = np.linspace(-1.5 * B, 1.5 * B, 301)
ax.plot(y_line, x_line, color="C2", lw=4, alpha=0.4, label="mirror image: (g(x), x)")
ax.plot(y_grid, g_inverse(y_grid)[0], "k", lw=1, label="closed form g^-1(y)")
ax.plot(y_knots, x_knots, "ko", ms=4)
ax.set_title("the inverse"), ax.set_xlabel("y"), ax.set_ylabel("x"), ax.legend(fontsize=8)
ax = axes[3]
ax.plot(x_line, log_slope_line, color="C0", lw=3, alpha=0.5, label="log g'(x) (forward log-det)")
ax.plot(x_line, -g_inverse(y_line)[1], "k", lw=1, label="- inverse log-det at g(x)")
ax.set_title("log-determinant"), ax.set_xlabel("x"), ax.legend(fontsize=8)
ax = axes[4]
ax.hist(x_samples, bins=120, range=(x_plot[0], x_plot[-1]), density=True, alpha=0.4, label="samples g(z)")
ax.plot(x_plot, q_plot, "k", lw=1, label="q(x) = φ(g⁻¹(x)) |dg⁻¹/dx|")
ax.plot(x_plot, np.exp(-0.5 * x_plot ** 2) / np.sqrt(2 * np.pi), color="gray", ls="--", lw=0.8, label="N(0, 1)")
ax.set_title("z ~ N(0, 1) pushed through g"), ax.set_xlabel("x"), ax.legend(fontsize=8)
fig.suptitle(f"one rational-quadratic spline, K = {K} bins, B = {B:g}, random θ")
savefig(fig, "ch10_spline_1d.png", args.figures_dir)

# %% [markdown]
# ## 2. Forward KL where affine couplings struggle
#
# An affine coupling moves $x_b$ by $x_b e^{s(x_a)} + t(x_a)$: for each value of $x_a$, a
# stretch and a shift. The *shape* of the conditional density of $x_b$ given $x_a$ is whatever
# the layer received; only later layers, reading the other coordinate, can bend it. A spline
# coupling instead applies a monotone map of any shape, chosen by the conditioner for each
# $x_a$: one layer can split a bump in two (section 1's last panel). Two targets where that
# matters, both with exact densities, so we can report the held-out NLL against the exact
# entropy and the paired KL $\mathbb E_p[\log p - \log q]$:
#
# * **a ring of 8 Gaussians**, standard deviation 0.3, means on a circle of radius 3
#   (`GaussianMixture`). The modes are $2 \cdot 3 \sin(\pi/8) = 2.30$ apart, 7.7 standard
#   deviations, so the entropy is nearly $\log 8 + \log(2\pi e \sigma^2)$; we compute it exactly
#   by quadrature.
# * **the checkerboard** (`Checkerboard`): uniform on the 8 black squares of side 2 in
#   $[-4, 4]^2$, so $p = 1/32$ there and 0 on the white squares. Its entropy is exactly
#   $\log 32 = 3.46574$. The density jumps at every edge, which no smooth flow reproduces;
#   $\log p = -\infty$ on the white squares, but the paired KL only ever evaluates $\log p$ on
#   samples of $p$, where it is $-\log 32$. (So here the paired KL *is* the gap NLL $- H$.)

# %%
angles = 2 * np.pi * np.arange(NUM_MODES) / NUM_MODES
ring = tinyflow.GaussianMixture(RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1), SIGMA)
checkerboard = tinyflow.Checkerboard()
targets = {"ring": ring, "checkerboard": checkerboard}
separated = np.log(NUM_MODES) + 1 + np.log(2 * np.pi) + 2 * np.log(SIGMA)
print(f"ring: entropy by quadrature {ring.entropy:.5f}; log 8 + log(2 pi e sigma^2) = {separated:.5f} "
      f"(modes 7.7 sd apart: they barely overlap)")
print(f"checkerboard: entropy log 32 = {checkerboard.entropy:.5f}")
for name, target in targets.items():
    x = target.sample(np.random.default_rng([SEED, 2, 9]), NUM_EVAL)
    log_p = target.log_prob(x)
    print(f"{name}: Monte Carlo -mean log p = {-log_p.mean():.5f} +- {log_p.std(ddof=1) / np.sqrt(NUM_EVAL):.5f} "
          f"(n = {NUM_EVAL})")

# %% [markdown]
# **Equal parameters, equal steps.** The spline flow is 4 `SplineCoupling` layers with $K = 16$
# bins on $[-4.5, 4.5]$ (a little wider than the checkerboard, so no data point sits on the
# bound) and a 1 → 32 → 32 → 47 ReLU conditioner ($3K - 1 = 47$ numbers for the one changed
# coordinate). The affine flow gets the same budget as 8 `AffineCoupling` layers with a
# 1 → 34 → 34 → 2 conditioner: twice as many layers, because depth is what lets affine couplings
# bend a density (the Notes at the end say which other splits were tried).
#
# Both train with the recipe of chapter 5: a warm-up over 50 steps to a peak step size, then a
# cosine decay to 0, gradients clipped at length 10, fresh batches of 256, 600 steps each. Each
# flow gets the peak step size that suited it best: 2e-2 for the affine flow and 6e-2 for the
# spline flow.

# %%
def make_flow(kind):
    masks = tinyflow.alternating_masks(2, SPLINE_LAYERS if kind == "spline" else AFFINE_LAYERS)
    if kind == "spline":
        layers = [tinyflow.SplineCoupling(mask, SPLINE_HIDDEN, NUM_BINS, BOUND, ACTIVATION) for mask in masks]
    else:
        layers = [tinyflow.AffineCoupling(mask, hidden=AFFINE_HIDDEN, activation=ACTIVATION) for mask in masks]
    return tinyflow.Flow(tinyflow.StandardNormal(2), layers)


KINDS = ["affine", "spline"]
flows = {kind: make_flow(kind) for kind in KINDS}
for kind in KINDS:
    size = tinyflow.flatten_params(flows[kind].init(np.random.default_rng(0)))[0].size
    print(f"{kind} flow: {len(flows[kind].layers)} couplings, {size:,} parameters")

results = {}
for j, (name, target) in enumerate(targets.items()):
    for i, kind in enumerate(KINDS):
        train_rng = np.random.default_rng([SEED, 3 + 2 * j + i])
        flow = flows[kind]
        start = time.process_time()
        params, history = tinyflow.fit(tinyflow.forward_kl(flow), flow.init(train_rng), target.sample, train_rng,
                                       NUM_STEPS, BATCH_SIZE, LEARNING_RATE[kind], schedule=SCHEDULE, warmup=WARMUP,
                                       clip_norm=CLIP_NORM)
        cpu = time.process_time() - start
        report = tinyflow.held_out_report(flow, params, target, np.random.default_rng([SEED, 2, j]), n=NUM_EVAL)
        results[name, kind] = {"params": params, "report": report, "ms": 1000 * cpu / NUM_STEPS,
                               "clipped": history["clipped"]}
        print(tinyflow.format_report(report, label=f"{name}, {kind} after {NUM_STEPS} steps"))
        print(f"    {results[name, kind]['ms']:.1f} ms of CPU per step; clipped {history['clipped']} gradients")

# %%
SPLINE_KL_BOUND = {"ring": 0.021, "checkerboard": 0.12}      # set on seeds 0-19 (Notes on the numbers)
RATIO_BOUND = {"ring": 0.13, "checkerboard": 0.6}
for name in targets:
    kl = {kind: results[name, kind]["report"]["kl"] for kind in KINDS}
    claim.bound(f"{name}: spline paired KL", kl["spline"], at_most=SPLINE_KL_BOUND[name], fmt=".3f")
    claim.bound(f"{name}: spline KL / affine KL", kl["spline"] / kl["affine"], at_most=RATIO_BOUND[name], fmt=".2f")

# %% [markdown]
# **Reading the numbers.** On the ring the spline flow's paired KL is at most 0.021 and at most
# 0.13 of the affine flow's on the same run: the affine flow ends near 0.2 (printed above). On the
# checkerboard the spline flow reaches at most 0.12, at most 0.6 of the affine flow's KL: less
# dramatic, because most of what is left there sits at the squares' edges, where the density
# jumps and any smooth flow must round it off. Each paired KL has a standard error of a few
# thousandths at most (printed), far below these differences.
#
# The step sizes are not what makes the difference (exercise 6), and the lead is not free: each
# spline layer computes 47 numbers per point, searches the bins and evaluates the rational
# function, forward and backward. The run prints its own CPU time per step as an illustration;
# `python -m tinyflow.benchmark` measures the two steps side by side on your machine (its row
# "chapter 10").

# %% [markdown]
# **Where the mass goes.** Two numbers, computed on samples of each flow. On the ring: the share
# of samples farther than 3 standard deviations from every mode. For the target this is
# $e^{-9/2} = 0.0111$ (the radius of a 2D standard Gaussian exceeds 3 with probability
# $e^{-3^2/2}$, and the modes barely overlap); a flow that cannot separate the modes leaves
# bridges of mass between them. On the checkerboard: the share of samples on a white square or
# outside $[-4, 4]^2$, where $p = 0$.

# %%
flow_samples, leak = {}, {}
for j, name in enumerate(targets):
    for i, kind in enumerate(KINDS):
        x = flows[kind].sample(results[name, kind]["params"], np.random.default_rng([SEED, 1, 2 * j + i]),
                               NUM_SAMPLES)
        flow_samples[name, kind] = x
        if name == "ring":
            distance = np.min(np.linalg.norm(x[:, None, :] - ring.means[None], axis=2), axis=1)
            leak[name, kind] = np.mean(distance > 3 * SIGMA)
            print(f"ring, {kind}: share of samples farther than 3 sd from every mode {leak[name, kind]:.4f}")
        else:
            leak[name, kind] = np.mean(np.isneginf(checkerboard.log_prob(x)))
            print(f"checkerboard, {kind}: share of samples where p = 0 {leak[name, kind]:.4f}")
x_ring = ring.sample(np.random.default_rng([SEED, 1, 9]), NUM_EVAL)
distance = np.min(np.linalg.norm(x_ring[:, None, :] - ring.means[None], axis=2), axis=1)
print(f"ring target: share farther than 3 sd from every mode {np.mean(distance > 3 * SIGMA):.4f} "
      f"(exp(-9/2) = {np.exp(-4.5):.4f})")
claim.bound("checkerboard, spline: share of samples where p = 0", leak["checkerboard", "spline"], at_most=0.08,
            fmt=".3f")
claim.frequency("the affine flow leaks at least 1.5 times the spline flow's share, on both targets",
                all(leak[name, "affine"] >= 1.5 * leak[name, "spline"] for name in targets), 20, 20)

# %% [markdown]
# On the ring about 2.5% of the spline flow's samples lie farther than 3 standard deviations
# from every mode (the target: 1.1%), against 6-10% of the affine flow's (printed). On the
# checkerboard at most 8% of the spline flow's samples land where $p = 0$, against about 10% of
# the affine flow's, and the affine flow leaks at least 1.5 times the spline flow's share on
# both targets. A leaked mass $m$ alone costs at least $-\log(1 - m)$ nats of KL (chapter 5,
# exercise 4): about 0.03-0.07 for the spline flow and 0.1 for the affine flow on the
# checkerboard, a large part of both KLs. The densities show where (the figure is seed 0's run;
# the colour scale stops at the target's peak): the affine flow smears each mode of the ring
# along the circle and joins neighbours by thin filaments, and it shears the checkerboard's
# squares and smears their edges onto the white squares; the spline flow keeps the eight modes
# apart and draws the squares with nearly straight edges, leaking along a few thin lines.

# %%
X, Y, points = grid(LIM, LIM, GRID)
fig, axes = plt.subplots(2, 3, figsize=(12, 8), constrained_layout=True, sharex=True, sharey=True)
for row, name in enumerate(targets):
    target = targets[name]
    p = np.exp(target.log_prob(points)).reshape(X.shape)
    vmax = p.max()
    panels = [("target p", p)] + [
        (f"{kind} ({len(flows[kind].layers)} couplings)\npaired KL {results[name, kind]['report']['kl']:.3f}",
         np.exp(flows[kind].log_prob(results[name, kind]["params"], points)).reshape(X.shape)) for kind in KINDS]
    for ax, (title, density) in zip(axes[row], panels):
        image = ax.pcolormesh(X, Y, density, shading="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{name}: {title}", fontsize=10), ax.set_aspect("equal")
    fig.colorbar(image, ax=axes[row], shrink=0.8, label="density")
fig.suptitle(f"forward KL, {NUM_STEPS} steps each, equal parameter counts")
savefig(fig, "ch10_forward_kl.png", args.figures_dir)

# %% [markdown]
# ## 3. Reverse KL on U1-U4
#
# Chapter 6 fitted Rezende & Mohamed's four energies by reverse KL with stacks of four affine
# IAF or coupling layers, and stayed far from them (its run prints the KL and the ESS of each).
# The shapes need a bend that depends on position: U2-U4 are waves
# $z_2 \approx \sin(\pi z_1 / 2)$, U3 and U4 split into two branches, and U1 is a ring with two
# arcs. In 2D one autoregressive spline layer is already a complete model of that kind:
#
# $$y_1 = g_1(z_1), \qquad y_2 = g_2(z_2;\ \theta(z_1)),$$
#
# a free monotone map of $z_1$ (its MADE output for coordinate 1 sees no input, so $\theta_1$ is
# learned as a constant), then for every $z_1$ its own monotone map of $z_2$, whose knots the MADE
# network moves with $z_1$. With $K = 16$ bins a conditional $g_2$ can put the wave's crest anywhere
# and split the mass into two branches; a stack of affine layers has to build the same bend from
# shears. `SplineAutoregressive` runs in the IAF direction, so sampling $x \sim q$ and its $\log q$
# take one pass, which is all reverse KL needs. We train it as chapter 6 did
# (`tinyflow.annealed_fit`): fresh noise every step, $\beta$ rising from 0.05 to 1 over the
# first 35% of the 2,400 steps, a warm-up over 50 steps to a peak step size of 1e-2 and a cosine
# decay; `reverse_report` then gives the exact KL (chapter 6's $\log Z$ by quadrature) and the
# ESS on 100,000 fresh samples.
#
# **The bound.** Outside $[-B, B]$ the layer is the identity, so $q$'s tails there are the base's,
# $N(0, 1)$. The envelope of U2-U4 (chapter 6) decays only like $e^{-(z_1/3)^4/2}$: about two
# points of $p$ in a thousand have $|z_1| > 5$, and two in a hundred thousand reach past 6. With
# $B = 6$ the spline must squeeze that tail against the bound, where its slope is pinned to 1;
# $q$ then has too little mass out there, and the few samples it does draw there carry huge
# weights $p/q$: on one run the ESS of a fit with a KL of 0.0016 fell to 65%. So $B = 8$ here.

# %%
REVERSE_BINS, REVERSE_BOUND = 16, 8.0       # B = 8: room for the tails of z1 (p reaches past |z1| = 6)
REVERSE_HIDDEN = (32, 32, 32)               # the MADE conditioner
REVERSE_STEPS = 8 if args.quick else 2400
REVERSE_RATE, REVERSE_WARMUP = 1e-2, 2 if args.quick else 50
REVERSE_BATCH = 256
BETA_START, ANNEAL = 0.05, 0.35             # beta rises from 0.05 to 1 over the first 35% of the steps
HALF_WIDTH, SPACING = 8.0, 0.1 if args.quick else 0.05      # chapter 6's quadrature grid
energies = [tinyflow.Energy(k) for k in (1, 2, 3, 4)]
log_Z = {energy.name: tinyflow.grid_log_Z(energy.log_prob, HALF_WIDTH, SPACING) for energy in energies}


# set on seeds 0-19 (Notes on the numbers); U1-U4 share one recipe, each energy its own bound
REVERSE_KL_BOUND = {"U1": 0.03, "U2": 0.0026, "U3": 0.05}     # U4 swings: a frequency below
reverse_flow = tinyflow.Flow(tinyflow.StandardNormal(2),
                             [tinyflow.SplineAutoregressive(REVERSE_HIDDEN, REVERSE_BINS, REVERSE_BOUND)])
print(f"one SplineAutoregressive layer: {tinyflow.flatten_params(reverse_flow.init(np.random.default_rng(0)))[0].size:,} "
      f"parameters, {REVERSE_STEPS} steps of batch {REVERSE_BATCH} per energy")
reverse_fits = {}
for i, energy in enumerate(energies):
    init_rng, train_rng, eval_rng = (np.random.default_rng([SEED, 10 + i, k]) for k in range(3))
    start = time.process_time()
    params, history = tinyflow.annealed_fit(
        reverse_flow, energy.log_prob, reverse_flow.init(init_rng), train_rng, REVERSE_STEPS, REVERSE_BATCH,
        BETA_START, max(1, int(ANNEAL * REVERSE_STEPS)), step_size=REVERSE_RATE, schedule="cosine",
        warmup=REVERSE_WARMUP)
    seconds = time.process_time() - start
    report = tinyflow.reverse_report(reverse_flow, params, energy.log_prob, log_Z[energy.name], eval_rng, NUM_EVAL)
    reverse_fits[energy.name] = params, report
    print(tinyflow.format_reverse_report(report, f"{energy.name} spline IAF") + f"; {seconds:.1f} s CPU to train")
    if energy.name in REVERSE_KL_BOUND:
        claim.bound(f"{energy.name} spline IAF KL(q||p)", report["kl"], at_most=REVERSE_KL_BOUND[energy.name],
                    fmt=".4f")
kl = {name: report["kl"] for name, (_, report) in reverse_fits.items()}
smallest_ess = min(report["ess"] for _, report in reverse_fits.values())
claim.frequency("U4 spline IAF KL(q||p) at most 0.04", kl["U4"] <= 0.04, 17, 20)
claim.frequency("smallest ESS of U1-U4 at least 90%", smallest_ess >= 0.90, 15, 20)
claim.frequency("KL(q||p) <= 0.02 and ESS >= 90% on all four energies", max(kl.values()) <= 0.02 and smallest_ess >= 0.90,
                3, 20)

# %%
fig, axes = plt.subplots(2, 4, figsize=(14, 7), constrained_layout=True, sharex=True, sharey=True)
X, Y, points = grid((-4, 4), (-4, 4), GRID)
for j, energy in enumerate(energies):
    params, report = reverse_fits[energy.name]
    p = np.exp(energy.log_prob(points) - log_Z[energy.name]).reshape(X.shape)
    q = np.exp(reverse_flow.log_prob(params, points)).reshape(X.shape)
    for row, (title, density) in enumerate([(f"{energy.name}: target p", p),
                                            (f"spline IAF: KL {report['kl']:.3f}, ESS {100 * report['ess']:.0f}%", q)]):
        axes[row, j].pcolormesh(X, Y, density, shading="auto", cmap="viridis", vmin=0, vmax=p.max())
        axes[row, j].set_title(title, fontsize=10), axes[row, j].set_aspect("equal")
fig.suptitle(f"reverse KL: one autoregressive spline layer ({REVERSE_BINS} bins), {REVERSE_STEPS} steps per energy")
savefig(fig, "ch10_reverse_kl.png", args.figures_dir)

# %% [markdown]
# **Reading the numbers.** One autoregressive spline layer of 5,310 parameters reaches
# $\mathrm{KL}(q\,\|\,p)$ of at most 0.03 on U1, 0.0026 on U2 and 0.05 on U3 (most runs of U3
# end near 0.014). The figure (seed 0) shows the shapes caught: both arcs of the ring, the wave,
# both branches of U3 and U4. What is left sits at the edges of the mass: faint straight seams in
# U1's $q$ near $z_1 = \pm 1$, where the ring's density is low, and the tails of U3's and U4's
# branches. The ESS is ruled by the few samples where $p/q$ is largest, the KL by the average of
# $\log q/p$, so a small KL can still go with a modest ESS.
#
# U4 is the hard one, and its fit swings from run to run: its KL is at most 0.04 on most runs,
# but not on all (the line above), and one run of the twenty that set these claims ended at a
# KL of 0.21 with an ESS of 0.3%. Where the second branch peels off ($z_1 > 1$), $g_2$ must
# carry $q$ across a gap in which $p$ is almost zero, and every bin, even the narrowest, keeps
# some of $q$'s mass there; where that fit is poor, reverse KL also thins $q$'s $z_1$ marginal,
# so the two errors come together. A KL of at most 0.02 with an ESS of at least 90% on all four
# energies is rare with this recipe (the last line above). The Notes at the end list what was
# tried to make U4 reliable; none of it did within this chapter's budget (exercise 8).

# %% [markdown]
# ## Summary
#
# * A rational-quadratic spline is a monotone map on $[-B, B]$ built from $3K - 1$ free numbers:
#   softmaxes give the bin widths and heights, softplus gives the interior knot derivatives, and
#   $d_0 = d_K = 1$ joins it to the identity tails with a continuous slope. Its inverse is a
#   closed-form root of a quadratic and its log-determinant is $\log g'$, one formula per bin;
#   the round trip is exact to rounding error (printed above).
# * One spline can turn one bump into several; an affine map cannot. With the same number of
#   parameters (10,684 against 10,624) and the same 600 steps, 4 spline couplings reach a paired
#   KL of at most 0.021 on the ring of 8 Gaussians, at most 0.13 of what 8 affine couplings
#   reach on the same run, and at most 0.12 on the checkerboard, at most 0.6 of the affine flow's.
#   What is left on the checkerboard sits at the jumps of its density, which no smooth flow makes.
# * A spline step costs more than an affine step, for half as many layers; `python -m
#   tinyflow.benchmark` measures by how much on your machine.
# * In reverse KL one autoregressive spline layer fits U1-U3 to a KL of at most 0.03, 0.0026 and
#   0.05; U4 swings (at most 0.04 on most runs, not all). The spline's bound must leave room for
#   the target's tails ($B = 8$ here), or the few samples out there ruin the ESS.
#
# ## Exercises
#
# 1. Derive the inverse: write $g(x) = y$ in bin $k$ as a quadratic $a\xi^2 + b\xi + c = 0$ and
#    check your $a, b, c$ against `spline.py`'s docstring. Why is the root written as
#    $\xi = 2c / (-b - \sqrt{b^2 - 4ac})$ and not as $(-b + \sqrt{\cdot})/2a$? (Try $a \to 0$.)
# 2. From the formula for $g'$, show that $g'(x_k) = d_k$ at $\xi = 0$ and $g'(x_{k+1}) = d_{k+1}$
#    at $\xi = 1$, so $g'$ is continuous at every knot. Is $g''$? Check your answer with
#    one-sided difference quotients of `layer.forward` at a knot.
# 3. Train the spline flow on the checkerboard with `bound=3`, so that the data reach into the
#    identity tails. What happens to the paired KL, and where in the plane does $q$ go wrong?
#    And with `bound=4`, exactly the checkerboard's edge?
# 4. Give the affine flow 12 layers of width 28 (11,112 parameters). How close does it come to
#    the spline flow on both targets on five seeds, and at what CPU time per step? Then compare
#    at equal time: give each flow as many steps as it can take in 10 s.
# 5. Spend the spline flow's parameters differently: $K = 8$ with a wider conditioner, or
#    $K = 32$ with a narrower one. Which matters more on the checkerboard, bins or width?
# 6. Train the spline flow at the affine flow's step size, 2e-2, on five seeds. How much of its
#    lead on each target remains?
# 7. On the checkerboard the paired KL equals the gap NLL $- H$ (printed: the two agree to the
#    last digit). Why? On the ring they differ: which has the smaller standard error, and why?
# 8. Fit U2 with section 3's recipe at `bound=6` and at `bound=8` on five seeds, and print the
#    five samples with the largest weights $p/q$ of each fit: where do they sit? Then take U4's
#    worst seed and try a peak step size of 5e-3, 8,000 steps, or a `Reverse` and a second
#    `SplineAutoregressive`: which brings its KL below 0.02, and does it stay there on five other
#    seeds? What does each do to U1?
#
# ## Notes on the numbers
#
# Every bound was set on seeds 0-19 (worst value plus half the spread, rounded outward) and
# checked on seeds 20-29 with `python chapters/seeds.py ch10 --seeds 20-29 --check`: 100 values,
# 0 outside; the four frequencies said yes on 10, 10, 9 and 4 of those 10 runs (the leak, U4's
# KL at most 0.04, the smallest ESS at least 90%, all four energies at 0.02 and 90%). With numpy's
# AVX-512 kernels off on seeds 20 and 21 (`--seeds 20-21 --cpus both --check`): 40 values, 0
# outside. The exact tolerances are the worst of the 20 runs rounded up a decade or two (2.8e-13
# and 5.6e-12).
# Over seeds 0-19, U4's KL ran from 0.014 to 0.21 (median 0.023; above 0.04 on seeds 8, 10 and
# 18), the smallest ESS of the four fits from 0.3% to 97% (below 90% on seeds 0, 4, 8, 10 and
# 18), and KL at most 0.02 with ESS at least 90% on all four energies held on 3 runs: so these
# three are frequencies. U1's KL was 0.016-0.025, U3's 0.010-0.034.
#
# Section 2's shapes and step sizes were chosen on seeds 0-2: 4 affine layers of width 49 did
# worse than 8 of width 34 on both targets, and so did 6 of 40 (by 8-36%); 12 layers of 28 did
# better on the checkerboard (paired KL 0.17-0.19) for about 1.3 times the time per step. Of the
# peak step sizes 1e-2, 2e-2, 4e-2 and 6e-2 the affine flow did best at 2e-2 (4e-2 was no better
# on the checkerboard and worse on the ring) and the spline flow at 6e-2 (0.1 was no better); at
# 2e-2 the spline flow's checkerboard KL was 0.34-0.47 of the affine flow's. On held-out seed 21
# the affine flow's paired KL on the ring was 59 +- 42 (so the ratio printed 0.00): its training
# loss ended at 2.77 like other runs', but a few of the 100,000 held-out points got log q near
# -3.6e6, where its unbounded scales send them far out (exercise 7 asks about such standard
# errors).
#
# An earlier version of section 3 used $B = 6$. On seed 6 that left U2 at a KL of 0.0016 with an
# ESS of 65%: one sample of 100,000, at $z_1 = 5.5$, carried 0.2% of the weight; $B = 8$ took it
# to 99.7%. U4 swung with every other change, which suggests a rugged landscape rather than a
# missing step (KL and ESS on seeds 0 and 6, $B = 8$ unless said): the recipe above 0.014 / 85%,
# 0.027 / 92%; at $B = 6$ 0.055 / 73%, 0.019 / 96%; clipping at 10 ($B = 6$) 0.177 / 1%, 0.016 /
# 96%; annealing over 20% of the steps 0.023 / 70%, 0.023 / 92%; a peak of 2e-2 0.188 / 1%, 0.038
# / 95%; 24 bins 0.021 / 73%, 0.041 / 89%; 32 bins 0.018 / 56%, 0.025 / 89.5%; no annealing 0.033 /
# 73%, 0.021 / 93%; $B = 7$ 0.068 / 61%, 0.028 / 94%; batches of 512 for 1,200-2,000 steps
# 0.013-0.030; 4,800 steps 0.027 / 87%, 0.058 / 87%; a second layer after a `Reverse`, 2,000
# steps, 0.013 / 98% on seed 0 but 0.19 / 2% on seed 1. One change did help U4, found after
# these claims were set: a peak step size of 5e-3 took U4 on seeds 0, 6, 8, 10 and 18 (its three
# worst of 0-19 among them) to KLs of 0.013-0.017 with ESS 95-97%, but left U1 at 0.028 on seed
# 0 (0.020 at 1e-2). It has not been set and checked on twenty seeds, so the recipe above keeps
# 1e-2 (exercise 8).
#
# Re-checked after the speed work of issue 19 (the faster fused coupling, the energies' gradients
# written out): the same maths rounded differently, so every run follows another trajectory, as it
# would on another machine. On fresh seeds 40-44 (`python chapters/seeds.py ch10 --seeds 40-44
# --check`): 50 values, 0 outside, every frequency as stated.

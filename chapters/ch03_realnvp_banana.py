# %% [markdown]
# # Chapter 3: RealNVP coupling layers on the banana
#
# **Goal.** Learn the banana density $x_2 \sim N(0, 4^2)$, $x_1 \mid x_2 \sim N(x_2^2/4, 1)$
# with a stack of RealNVP coupling layers; watch the layers untangle the data into a Gaussian;
# then train on a *fixed* set of 1024 points, as the tutorial we follow does, see the flow
# overfit, and measure which cure works.
#
# **Key equation.** A coupling layer keeps one part of its input, $x_a$, and rescales and
# shifts the other, $x_b$, by amounts computed from $x_a$ alone:
#
# $$y_a = x_a, \qquad y_b = x_b \odot e^{s(x_a)} + t(x_a), \qquad
# \log\left|\det \frac{\partial y}{\partial x}\right| = \sum_b s_b(x_a).$$
#
# The Jacobian is triangular (nothing in $y_a$ depends on $x_b$), so its log-determinant is
# the sum of the diagonal, and the inverse $x_b = (y_b - t(y_a))\, e^{-s(y_a)}$ needs only one
# more evaluation of $s$ and $t$ — even though $s$ and $t$ are neural networks we never invert.
#
# **Builds on.** Chapter 1 (`Affine`, `Flow`, `fit`, `forward_kl`) and chapter 2
# (`held_out_report`).
#
# **Introduces.** `tinyflow/coupling.py` (`AffineCoupling`, `alternating_masks`) and
# `tinyflow/mlp.py` (the small network behind $s$ and $t$), and `fit`'s step-size schedule,
# callback, weight decay, validation set and early stopping.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
from autograd.misc import flatten
from matplotlib.animation import FuncAnimation, PillowWriter

import tinyflow
from tinyflow.plotting import chapter_args, grid, plot_density, savefig

args = chapter_args(__doc__ or "Chapter 3: RealNVP coupling layers on the banana")
QUICK = args.quick
claim = tinyflow.claims(quick=QUICK)              # prints a result beside what this text states about it

SEED = args.seed
NUM_COUPLINGS, HIDDEN = 4, (32, 32)               # the model trained on fresh samples
ACTIVATION = "relu"                               # the conditioners' hidden units
NUM_STEPS = 20 if QUICK else 1100                 # fresh samples every step
LEARNING_RATE = 3e-3                              # the peak of the schedule
SCHEDULE, WARMUP = "cosine", 5 if QUICK else 50   # ramp up, then decay to 0 along a cosine
BATCH_SIZE = 256
NUM_STANDARDISE_STEPS = 10 if QUICK else 200      # for the with/without standardisation comparison
NUM_TRAIN = 1024                                  # the tutorial's fixed training set
BIG_COUPLINGS, BIG_HIDDEN = (2, (32, 32)) if QUICK else (6, (64, 64))   # a bigger model overfits faster ...
OVERFIT_STEPS = 10 if QUICK else 500
OVERFIT_LEARNING_RATE = 2e-3
OVERFIT_BATCH_SIZE = 256 if QUICK else NUM_TRAIN  # ... and so it does on the full, noiseless gradient
EVAL_EVERY = 5 if QUICK else 25                   # steps between held-out checks during training
RISE = 0.01                                       # nats: "the held-out NLL climbs" means by more than this
CAP = 5.0                                         # nats: a held-out point this far off is "hopelessly wrong"
NUM_CURVE = 500 if QUICK else 5_000               # fresh points behind each held-out curve point
NUM_HELD_OUT = 1_000 if QUICK else 100_000        # fresh points behind each report
GRID = 40 if QUICK else 250                       # heat-map pixels per side
FRAMES_PER_LAYER = 1 if QUICK else 4              # animation frames between two layers
NUM_SHOW = 500 if QUICK else 2_000                # points in each scatter plot
XLIM, YLIM = (-6.0, 40.0), (-14.0, 14.0)          # the plotting window (x1 across, x2 up)
# One generator per purpose, so that drawing more points for a figure or a report never changes
# what a model is trained on, and every model is scored on the same held-out points.
data_rng = np.random.default_rng([SEED, 0])       # the fixed training set, and points to check and show
train_rng = np.random.default_rng([SEED, 1])      # initial parameters and training batches
eval_seed = [SEED, 2]                             # held-out points: the same for every model scored
compare_seed = [SEED, 3]                          # section 4: both runs start from the same draw
cure_seed = [SEED, 4]                             # sections 8 and 9: every model starts from the same draw
target = tinyflow.Banana()
start = time.perf_counter()


def held_out(flow, params):
    """held_out_report on NUM_HELD_OUT fresh points, the same points for every model."""
    return tinyflow.held_out_report(flow, params, target, np.random.default_rng(eval_seed), NUM_HELD_OUT)

# %% [markdown]
# ## 1. The target, and the fixed training set
#
# The banana bends $x_1$ along the parabola $x_1 = x_2^2 / 4$, with unit noise across it. Its
# entropy is the sum of two Gaussian entropies (the conditional's variance does not depend on
# $x_2$): $H = \tfrac12\log(2\pi e\, 4^2) + \tfrac12 \log(2\pi e) = 4.22417$ nats, the floor no
# model's held-out NLL can go below. The tutorial draws 1024 points once and trains on them;
# we do the same, and keep more fresh draws aside to judge the model with.
#
# How far does a training set of 1024 points reach? Its largest $x_1$ is a random number whose
# distribution we can compute: $P(\max \le c) = F(c)^{1024}$, where $1 - F(c) = P(x_1 > c)$ is
# the average over $x_2$ of a Gaussian tail, $P(x_1 > c \mid x_2) = \tfrac12
# \operatorname{erfc}\big((c - x_2^2/4)/\sqrt 2\big)$ (a sum over a fine grid of $x_2$ below).
# The text's range for it is that distribution's central 99.9%: a statement about every run, not
# a summary of a few. It is wide, because $x_2^2$ has a long tail: the far end of the training
# cloud is a matter of luck, and section 8 shows that an overfit flow pays for it.

# %%
x_train = target.sample(data_rng, NUM_TRAIN)
x_curve = target.sample(data_rng, NUM_CURVE)     # held out: only ever used to *measure*
log_p = target.log_prob(x_curve)
print(f"entropy H(p) = {target.entropy:.5f}; Monte-Carlo check -mean log p = {-log_p.mean():.5f} "
      f"+- {log_p.std() / np.sqrt(NUM_CURVE):.5f}")
mean, std = x_train.mean(axis=0), x_train.std(axis=0)
print(f"training set: {NUM_TRAIN} points, x1 in [{x_train[:, 0].min():.1f}, {x_train[:, 0].max():.1f}], "
      f"x2 in [{x_train[:, 1].min():.1f}, {x_train[:, 1].max():.1f}]")
print(f"training set: mean = ({mean[0]:.2f}, {mean[1]:.2f}), std = ({std[0]:.2f}, {std[1]:.2f}) "
      f"(exact: mean (4, 0), std ({np.sqrt(33):.2f}, 4))")


def largest_x1_quantiles(n, probabilities):
    """Quantiles of the largest x1 among n draws of the banana: P(max <= c) = (1 - P(x1 > c))^n, with
    P(x1 > c) = E over x2 ~ N(0, 4^2) of erfc((c - x2^2 / 4) / sqrt 2) / 2, summed on a grid; c by bisection."""
    x2 = np.linspace(-48.0, 48.0, 4801)                            # +- 12 sd of x2
    weight = np.exp(-x2 ** 2 / 32) / np.sqrt(32 * np.pi) * (x2[1] - x2[0])
    erfc = np.frompyfunc(math.erfc, 1, 1)

    def below(c):
        tail = np.sum(weight * erfc((c - x2 ** 2 / 4) / math.sqrt(2)).astype(float)) / 2
        return (1 - tail) ** n
    quantiles = []
    for p in probabilities:
        low, high = 0.0, 400.0
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if below(middle) < p else (low, middle)
        quantiles.append(low)
    return quantiles


low, median, high = largest_x1_quantiles(NUM_TRAIN, [0.0005, 0.5, 0.9995])
print(f"largest x1 of {NUM_TRAIN} draws: median {median:.1f}; 99.9% of training sets between {low:.1f} and {high:.1f}")
claim.range(f"largest x1 in the training set (99.9% of sets of {NUM_TRAIN} draws)", x_train[:, 0].max(),
            low, high, fmt=".1f")

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
image = plot_density(axes[0], target.log_prob, XLIM, YLIM, n=GRID, title="the banana density p(x)")
fig.colorbar(image, ax=axes[0], label="p(x)")
axes[1].scatter(x_train[:, 0], x_train[:, 1], s=3, c="k")
axes[1].set_xlim(*XLIM)
axes[1].set_title(f"the fixed training set ({NUM_TRAIN} points)")
for ax in axes:
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
savefig(fig, "ch03_target.png", args.figures_dir)

# %% [markdown]
# ## 2. One coupling layer
#
# `AffineCoupling(mask, hidden)` keeps the coordinates where `mask == 1` and changes the others.
# Its $s$ and $t$ come out of one small MLP (`tinyflow/mlp.py`, $x_a \to$ hidden $\to [s, t]$)
# whose last layer starts at zero, so a fresh coupling is the identity. The log-scale is
# soft-bounded, $s = s_{max} \tanh(s_{raw} / s_{max})$ with $s_{max} = 5$ (the default),
# so one bad step cannot make $e^{s}$ overflow. Its hidden units are relus
# (`activation="relu"`, as in the PyTorch tutorials): the kinks let $s$ and $t$ bend sharply
# where they need to, and a relu costs a comparison where tanh costs a transcendental function.
# Whether that makes a training step cheaper depends on how fast your numpy computes tanh:
# `python -m tinyflow.benchmark` times this chapter's model with each (its "chapter 3" row).
# `check_layer` compares the log-det with the Jacobian's actual determinant; we first move every
# parameter away from its initial value (at zero, $s = 0$ and a wrong log-det would go unseen).
# In the layer below $x_2$ is kept and $x_1$ changed: $J = \begin{pmatrix} e^{s(x_2)} & \cdot \\
# 0 & 1\end{pmatrix}$ in $(x_1, x_2)$ order, with a zero where $\partial y_2 / \partial x_1$ sits.

# %%
coupling = tinyflow.AffineCoupling(mask=[0, 1], hidden=HIDDEN, activation=ACTIVATION)
coupling_params = [{"W": W + 0.5 * data_rng.standard_normal(W.shape),
                    "b": b + 0.5 * data_rng.standard_normal(b.shape)}
                   for layer in coupling.init(data_rng, 2) for W, b in [(layer["W"], layer["b"])]]
x_check = data_rng.standard_normal((50, 2)) * [3.0, 2.0]
errors = tinyflow.check_layer(coupling, coupling_params, x_check)
for name, error in errors.items():
    print(f"check_layer, coupling with moved parameters: {name}: {error:.1e}")
J = tinyflow.autograd_jacobian(lambda x: coupling.forward(coupling_params, x)[0], x_check)
print(f"max |dy2/dx1| over 50 points = {np.max(np.abs(J[:, 1, 0])):.1e} (the zero of the triangle); "
      f"dy1/dx1 = e^s ranges over [{J[:, 0, 0].min():.2f}, {J[:, 0, 0].max():.2f}]")

# %% [markdown]
# ## 3. The flow: a stack of couplings and a standardising Affine
#
# One coupling changes only half the coordinates, so we stack them with alternating masks
# (`alternating_masks(2, K)`: keep $x_1$, then keep $x_2$, ...). The tutorial also puts a
# `LeakyReLU` between consecutive couplings; we leave them out, because the couplings alone
# can represent the banana (exercise 4); exercise 3 puts them back and measures what they do.
#
# **A word on direction.** The tutorial writes its layers as maps from *data to noise*, so its
# "forward" is our `inverse`, and its last layer is our first. In tinyflow `forward` is always
# the generative direction, noise $z$ to data $x$, and `log_prob` runs the layers inverse,
# from the data back to $z$.
#
# **Standardising.** The banana spans tens of units in $x_1$ (the largest $x_1$ of a training
# set of 1024 points is 46 on a median run, section 1) while the base is $N(0, I)$, and the
# conditioner's first layer is initialised for inputs of order one (its relu kinks sit within a
# unit or so of zero). So the last layer in the generative direction is an `Affine` whose
# parameters we *set from the data*: `log_scale = log(std)`, `shift = mean`. Run inverse, it
# maps the data to standardised coordinates before any coupling sees them. We leave it
# trainable (it starts at the right place, and training may move it); section 4 measures what
# it is worth.

# %%
def banana_flow(num_couplings, hidden, activation=ACTIVATION):
    """z -> coupling -> coupling -> ... -> coupling -> Affine -> x (generative order)."""
    layers = [tinyflow.AffineCoupling(mask, hidden, activation=activation)
              for mask in tinyflow.alternating_masks(2, num_couplings)]
    return tinyflow.Flow(tinyflow.StandardNormal(2), layers + [tinyflow.Affine()])


def init_params(flow, rng, x, standardise=True):
    """Fresh parameters; with standardise, the last (Affine) layer maps N(0, I) onto the data's
    mean and std: log_scale = log(std), shift = mean."""
    params = flow.init(rng)
    if standardise:
        params["layers"][-1] = {"log_scale": np.log(x.std(axis=0)), "shift": x.mean(axis=0)}
    return params


flow = banana_flow(NUM_COUPLINGS, HIDDEN)
print("layers (generative order):", ", ".join(type(layer).__name__ for layer in flow.layers))
params = init_params(flow, train_rng, x_train)
print(f"masks: {[m.tolist() for m in tinyflow.alternating_masks(2, NUM_COUPLINGS)]} (1 = kept)")
print(f"{flatten(params)[0].size} parameters; standardising Affine: "
      f"log_scale = {np.round(params['layers'][-1]['log_scale'], 3)}, "
      f"shift = {np.round(params['layers'][-1]['shift'], 3)}")
x_back = flow.forward(params, flow.trace(params, x_check, inverse=True)[-1])[0]
print(f"flow round trip on 50 points: max |f(f^-1(x)) - x| = {np.max(np.abs(x_back - x_check)):.1e}")

# %% [markdown]
# ## 4. What standardising is worth
#
# Same flow, same steps, same fresh samples, once with the `Affine` set from the data and once
# with it starting at the identity (scale 1, shift 0; it can still learn the scale, but only at
# the optimiser's pace, about `LEARNING_RATE` per step in log-scale). Standardising lowered the
# KL after 200 steps on every one of 20 runs. By how much varies (the run prints the ratio), and
# so does the standardised KL itself: after only 200 steps at a constant step size a run may
# still be far from done, which is why section 5 trains longer, with a schedule.

# %%
loss = tinyflow.forward_kl(flow)
standardise_kl = {}
for standardise in (True, False):
    run_rng = np.random.default_rng(compare_seed)             # the same start and samples for both runs
    p0 = init_params(flow, run_rng, x_train, standardise)
    p_std, _ = tinyflow.fit(loss, p0, target.sample, run_rng, NUM_STANDARDISE_STEPS, BATCH_SIZE, LEARNING_RATE)
    report = held_out(flow, p_std)
    standardise_kl[standardise] = report["kl"]
    print(tinyflow.format_report(report, f"standardised = {standardise}, {NUM_STANDARDISE_STEPS} steps"))
    print(f"  learned Affine: scale = {np.round(np.exp(p_std['layers'][-1]['log_scale']), 2)}, "
          f"shift = {np.round(p_std['layers'][-1]['shift'], 2)}")
print(f"KL not standardised / standardised: {standardise_kl[False] / standardise_kl[True]:.1f}")
claim.frequency(f"standardising lowers the KL after {NUM_STANDARDISE_STEPS} steps",
                standardise_kl[True] < standardise_kl[False], 20, 20)

# %% [markdown]
# ## 5. Training on fresh samples
#
# Before the fixed training set, the easy case: a fresh batch of the target every step
# (`fit(..., data=target.sample)`), so the flow can never memorise a point. Forward KL's floor
# is the entropy, so the held-out gap NLL $-$ H is the KL divergence we are driving to zero.
# At a constant step size the parameters would keep jittering around the optimum (each step
# follows one noisy batch), so the step size follows a schedule
# (`fit(..., schedule="cosine", warmup=50)`): it ramps up over the first 50 steps, while
# Adam's moment estimates are still rough, then decays to zero along half a cosine, so the
# last steps are small and the parameters settle. The KL after 1100 steps is at most 0.0022,
# with at most 3 held-out points (of 100,000) more than 5 nats off.

# %%
params = init_params(flow, train_rng, x_train)
params, history = tinyflow.fit(loss, params, target.sample, train_rng, NUM_STEPS, BATCH_SIZE, LEARNING_RATE,
                               schedule=SCHEDULE, warmup=WARMUP)
fresh_report = held_out(flow, params)
print(tinyflow.format_report(fresh_report, f"fresh samples, {NUM_STEPS} steps, {SCHEDULE} schedule"))
print(f"  median of log p - log q = {fresh_report['kl_median']:.5f}; points more than 5 nats off: "
      f"{fresh_report['far_off']} of {NUM_HELD_OUT}")
claim.bound(f"KL after {NUM_STEPS} steps on fresh samples", fresh_report["kl"], at_most=0.0022)
claim.bound("held-out points more than 5 nats off, fresh samples", fresh_report["far_off"], at_most=3,
            fmt=".0f")

# %% [markdown]
# ## 6. Layer by layer: untangling the banana
#
# `flow.trace(params, x, inverse=True)` returns the held-out points after every inverse layer,
# from the data $x$ to the base $z$. We colour each point by its $x_2$ so you can follow it.
# The inverse `Affine` shrinks the data to unit scale; each coupling then moves one coordinate
# by an amount that depends on the other (the coupling that changes $x_1$ as a function of
# $x_2$ straightens the parabola).

# %%
x_show = target.sample(data_rng, NUM_SHOW)
stages = flow.trace(params, x_show, inverse=True)
names = ["data x"] + [f"after {type(layer).__name__}$^{{-1}}$" for layer in reversed(flow.layers)]
names[-1] += " = z"
z = stages[-1]
print(f"{len(stages)} stages; the last (z): mean = ({z[:, 0].mean():.3f}, {z[:, 1].mean():.3f}), "
      f"std = ({z[:, 0].std():.3f}, {z[:, 1].std():.3f}), corr = {np.corrcoef(z.T)[0, 1]:.3f} (N(0, I): 0, 1, 0)")


def limits(points):
    lo, hi = np.percentile(points, [0.5, 99.5], axis=0)
    pad = 0.1 * (hi - lo)
    return lo - pad, hi + pad


num_columns = 3
num_rows = -(-len(stages) // num_columns)
fig, axes = plt.subplots(num_rows, num_columns, figsize=(3.2 * num_columns, 3.0 * num_rows))
for ax, points, name in zip(axes.ravel(), stages, names):
    ax.scatter(points[:, 0], points[:, 1], c=x_show[:, 1], cmap="coolwarm", s=2)
    lo, hi = limits(points)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("coordinate 1")
    ax.set_ylabel("coordinate 2")
for ax in axes.ravel()[len(stages):]:
    ax.axis("off")
fig.suptitle("the inverse flow, layer by layer: data (top left) to N(0, I) (bottom right); colour = $x_2$")
fig.subplots_adjust(hspace=0.45, wspace=0.35)
savefig(fig, "ch03_layers.png", args.figures_dir)

# %% [markdown]
# The same journey as an animation: between two stages each point slides along a straight line
# (only the stages themselves are points of the flow; the frames between are for the eye).

# %%
fig, ax = plt.subplots(figsize=(4, 4))
dots = ax.scatter(*stages[0].T, c=x_show[:, 1], cmap="coolwarm", s=2)
ax.set_xlabel("coordinate 1")
ax.set_ylabel("coordinate 2")
frames = [(k, u) for k in range(len(stages) - 1) for u in np.linspace(0, 1, FRAMES_PER_LAYER, endpoint=False)]
frames += [(len(stages) - 2, 1.0)] * FRAMES_PER_LAYER                  # hold the Gaussian at the end


def draw(frame):
    k, u = frame
    points = (1 - u) * stages[k] + u * stages[k + 1]
    (lo0, hi0), (lo1, hi1) = limits(stages[k]), limits(stages[k + 1])
    lo, hi = (1 - u) * lo0 + u * lo1, (1 - u) * hi0 + u * hi1
    dots.set_offsets(points)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(names[k + 1] if u > 0.5 else names[k], fontsize=9)
    return (dots,)


animation = FuncAnimation(fig, draw, frames=frames, blit=False)
gif_path = args.figures_dir / "ch03_layers.gif"
animation.save(gif_path, writer=PillowWriter(fps=6), dpi=60)
plt.close(fig)
print(f"wrote {gif_path} ({len(frames)} frames, {gif_path.stat().st_size / 1e6:.2f} MB)")

# %% [markdown]
# ## 7. Samples, and the learned density
#
# Sampling runs the flow the other way, *forward*: $z \sim N(0, I)$ through the couplings,
# then the `Affine` back to data units. Both directions use the same parameters;
# nothing was trained for sampling separately.

# %%
x_flow = flow.sample(params, data_rng, NUM_SHOW)
x_true = target.sample(data_rng, NUM_SHOW)
for name, points in (("flow samples", x_flow), ("target samples", x_true)):
    residual = points[:, 0] - points[:, 1] ** 2 / 4           # ~ N(0, 1) under the target
    print(f"{name}: x2 std = {points[:, 1].std():.3f} (4), x1 - x2^2/4: mean = {residual.mean():+.3f} (0), "
          f"std = {residual.std():.3f} (1)")

fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
for ax, points, title in zip(axes, (x_true, x_flow), ("target samples", "flow samples (forward from z)")):
    ax.scatter(points[:, 0], points[:, 1], s=2, c="k")
    ax.set_title(title)
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
axes[0].set_xlim(*XLIM)
axes[0].set_ylim(*YLIM)
savefig(fig, "ch03_samples.png", args.figures_dir)

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
learned = plot_density(axes[0], lambda x: flow.log_prob(params, x), XLIM, YLIM, n=GRID, title="learned q(x)")
image = plot_density(axes[1], target.log_prob, XLIM, YLIM, n=GRID, title="true p(x)")
learned.set_clim(image.get_clim())                      # one colour scale for both panels
for ax in axes:
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
fig.colorbar(image, ax=axes, label="density")
savefig(fig, "ch03_density.png", args.figures_dir)

# %% [markdown]
# ## 8. The fixed training set: overfitting
#
# Now do what the tutorial does: train on the same 1024 points over and over. A flow is a
# density, so "memorising" means piling probability onto the training points and taking it
# from the gaps between them, where fresh points land. We try to make it happen fast: a bigger
# model (6 couplings, hidden (64, 64)) and the full 1024-point gradient at every step (no
# minibatch noise to blur the points together). To watch both NLLs *during* training we hand
# `fit` a callback: `fit` calls `callback(step, params, loss)` after every step, with the
# number of steps taken so far (1, 2, ...) and the parameters they reached, and ours records
# the NLL on the training set and on the fresh points `x_curve` every `EVAL_EVERY` steps.
#
# Two signs give memorising away. The training NLL goes below the true density's own NLL on
# the same 1024 points (the truth is the best model of fresh data, so a flow that beats it on
# the training points has fitted their accidents), and the held-out NLL turns round and climbs.

# %%
big_flow = banana_flow(BIG_COUPLINGS, BIG_HIDDEN)
big_loss = tinyflow.forward_kl(big_flow)
run_rng = np.random.default_rng(cure_seed)
big_params = init_params(big_flow, run_rng, x_train)
print(f"big model: {BIG_COUPLINGS} couplings, hidden {BIG_HIDDEN}, "
      f"{flatten(big_params)[0].size} parameters for {NUM_TRAIN} points")
overfit_curve = [(0, big_loss(big_params, x_train), big_loss(big_params, x_curve))]   # (step, train, held-out)


def record(step, params, loss):
    """fit's callback: every EVAL_EVERY steps, the NLL on the training set and on the fresh points.
    (`loss` is the loss of the batch this step trained on, before the step: not what we want.)"""
    if step % EVAL_EVERY == 0 or step == OVERFIT_STEPS:
        overfit_curve.append((step, big_loss(params, x_train), big_loss(params, x_curve)))


big_params, _ = tinyflow.fit(big_loss, big_params, x_train, run_rng, OVERFIT_STEPS, OVERFIT_BATCH_SIZE,
                             OVERFIT_LEARNING_RATE, callback=record)
overfit_curve = np.array(overfit_curve)
for step, train, fresh in overfit_curve[::max(1, len(overfit_curve) // 5)]:
    print(f"step {step:4.0f}: training NLL {train:.4f}, held-out NLL {fresh:.4f} "
          f"(entropy {target.entropy:.4f})")
best = np.argmin(overfit_curve[:, 2])
print(f"held-out NLL (on {NUM_CURVE} points) was lowest, {overfit_curve[best, 2]:.4f}, at step "
      f"{overfit_curve[best, 0]:.0f}; at the end: {overfit_curve[-1, 2]:.4f}")
train_nll = big_loss(big_params, x_train)
true_train_nll = -target.log_prob(x_train).mean()   # what the true p scores on these 1024 points
print(f"after {OVERFIT_STEPS} steps: training NLL {train_nll:.4f} vs entropy {target.entropy:.4f} "
      f"and vs {true_train_nll:.4f}, the true density's NLL on the training set")
claim.frequency("the overfit model's training NLL ends below the true density's on the same points",
                train_nll < true_train_nll, 19, 20)
claim.frequency(f"its held-out NLL ends more than {RISE} nats above its lowest",
                overfit_curve[-1, 2] - overfit_curve[best, 2] > RISE, 20, 20)

# %% [markdown]
# On fresh points the damage is lopsided. We score every model of this section and the next
# on the same 100,000 fresh points (`eval_seed`). An overfit flow is about as good as the truth
# on a typical point and hopelessly wrong on a few, where it has learned that the training
# points stop and puts almost no density beyond them (the figure in section 9 shows where).
# How wrong is "hopelessly"? The inverse flow maps such a point far out into the base, and each
# coupling can stretch by up to $e^{s_{max}} = e^5$, so $\log q$ can be off by thousands of
# nats at a single point: enough to carry the mean of $\log p - \log q$, the KL, all by itself.
# A KL that a handful of points out of 100,000 decide is known only to within about its own size,
# and it swings from run to run by orders of magnitude. So besides the KL we read statistics
# that a handful of points cannot carry, and count those points separately:
#
# - the **median** of $\log p - \log q$: the typical point;
# - the **capped KL**, the mean of $\min(\log p - \log q,\, 5)$: every point counts, but a
#   point more than 5 nats off counts as 5 nats, however far off it is;
# - the number of points **more than 5 nats off**, and the share of the KL they carry.

# %%
x_eval = target.sample(np.random.default_rng(eval_seed), NUM_HELD_OUT)   # the points held_out() scores on
log_p_eval = target.log_prob(x_eval)


def log_ratio(flow, params):
    """log p(x) - log q(x) at the shared held-out points: its mean is the paired KL estimate."""
    return log_p_eval - flow.log_prob(params, x_eval)


def standard_error(values):
    return values.std(ddof=1) / np.sqrt(len(values))


def capped_kl(d):
    """The mean of min(log p - log q, CAP): a point more than CAP nats off counts CAP nats."""
    return np.mean(np.minimum(d, CAP))


d_none = log_ratio(big_flow, big_params)
worst = x_eval[np.argmax(d_none)]
far = np.abs(d_none) > CAP
print(f"overfit model: KL = {d_none.mean():.4f} +- {standard_error(d_none):.4f}, median of log p - log q "
      f"{np.median(d_none):.4f}, capped KL {capped_kl(d_none):.4f}")
print(f"  {np.sum(far)} of {NUM_HELD_OUT} points more than {CAP} nats off carry {np.sum(d_none[far]) / np.sum(d_none):.0%} "
      f"of the KL; the worst is {d_none.max():.3g} nats off, at x = ({worst[0]:.1f}, {worst[1]:.1f})")
fresh_d = log_p_eval - flow.log_prob(params, x_eval)                  # section 5's model, for comparison
print(f"  section 5's model (fresh samples): median {np.median(fresh_d):.4f}, capped KL {capped_kl(fresh_d):.4f}, "
      f"{np.sum(np.abs(fresh_d) > CAP)} points more than {CAP} nats off")
claim.range("median of log p - log q, overfit model", np.median(d_none), -0.07, 0.11)

# %% [markdown]
# ## 9. Curing it, and measuring which cure helps
#
# Three standard cures, each tried alone and then together, each starting from the same draw
# as the uncured model (`cure_seed`) and judged on the same fresh held-out points:
#
# - **early stopping**: hold back 20% of the 1024 points as a validation set, train on the
#   rest, check the validation NLL every `EVAL_EVERY` steps, and keep the best parameters,
#   stopping after `PATIENCE` checks without improvement (`fit(..., validation=, patience=)`);
# - **weight decay**: AdamW shrinks every weight towards zero a little each step
#   (`fit(..., weight_decay=)`), which keeps the conditioners smooth. The shrinkage per step is
#   learning rate $\times$ decay, so PyTorch's default decay of 0.01 would remove only 0.002%
#   a step here; we use 1.0 (0.2% a step). It shrinks *every* parameter, the standardising
#   `Affine`'s log-scale and shift too, whose right values are far from zero: the run prints
#   how much of section 4's standardisation it undoes;
# - **a smaller model**: 2 couplings with hidden (16, 16), the fewest couplings that can
#   represent the banana.
#
# Because every model is scored on the same points, the difference of two KLs is the mean of
# a per-point difference, $\log q_{none} - \log q_{cure}$, and the last column gives it with
# its own standard error, computed from those per-point differences (so what the two models
# get wrong at the same points cancels, as the target's spread cancels in the paired KL). On a
# run where the uncured model has a catastrophe, that SE is as large as the KL itself, so no
# single run can say by how much a cure helps. What 20 runs can say is how often it helps at all:
# the claims below count the runs (seeds 0-19) on which each cure lowered the held-out KL.

# %%
PATIENCE = 3 if QUICK else 5
WEIGHT_DECAY = 1.0                    # AdamW shrinks theta by lr * 1.0 = 0.2% a step
SMALL_COUPLINGS, SMALL_HIDDEN = 2, (16, 16)
num_validation = NUM_TRAIN // 5
x_fit, x_validation = x_train[num_validation:], x_train[:num_validation]   # the draws are i.i.d.
cures = {"early stopping": (True, 0.0, False), "weight decay": (False, WEIGHT_DECAY, False),
         "smaller model": (False, 0.0, True), "all three": (True, WEIGHT_DECAY, True)}
rows = {"none (section 8)": (OVERFIT_STEPS, train_nll, d_none)}
histories, cured = {}, {}
for name, (early_stop, weight_decay, small) in cures.items():
    cure_flow = banana_flow(SMALL_COUPLINGS, SMALL_HIDDEN) if small else big_flow
    cure_loss = tinyflow.forward_kl(cure_flow)
    run_rng = np.random.default_rng(cure_seed)
    p0 = init_params(cure_flow, run_rng, x_train)
    x_used = x_fit if early_stop else x_train
    validation = dict(validation=x_validation, eval_every=EVAL_EVERY, patience=PATIENCE) if early_stop else {}
    p, history = tinyflow.fit(cure_loss, p0, x_used, run_rng, OVERFIT_STEPS, OVERFIT_BATCH_SIZE,
                              OVERFIT_LEARNING_RATE, weight_decay=weight_decay, **validation)
    rows[name] = (int(np.sum(np.isfinite(history["loss"]))), cure_loss(p, x_used), log_ratio(cure_flow, p))
    histories[name], cured[name] = history, (cure_flow, p)
    if weight_decay:
        before, after = p0["layers"][-1], p["layers"][-1]
        print(f"{name}: the standardising Affine went from log_scale {np.round(before['log_scale'], 2)}, "
              f"shift {np.round(before['shift'], 2)} to {np.round(after['log_scale'], 2)}, "
              f"{np.round(after['shift'], 2)}")

print(f"\n{'cure':18s} {'steps':>6s} {'train NLL':>10s} {'KL +- SE':>18s} {'capped KL':>10s} {'median':>8s} "
      f"{'> 5 nats off':>13s} {'KL - uncured KL':>20s}")
for name, (steps_run, train, d) in rows.items():
    change = d - d_none
    paired = f"{change.mean():+.4f} +- {standard_error(change):.4f}" if name in cures else "-"
    print(f"{name:18s} {steps_run:6d} {train:10.4f} {d.mean():9.4f} +- {standard_error(d):.4f} {capped_kl(d):10.4f} "
          f"{np.median(d):8.4f} {np.sum(np.abs(d) > CAP):13d} {paired:>20s}")
print(f"(entropy {target.entropy:.5f}; held-out numbers on the same {NUM_HELD_OUT} fresh points for every row)")
kl = {name: d.mean() for name, (_, _, d) in rows.items()}
CURE_FREQUENCY = {"early stopping": 20, "weight decay": 14, "smaller model": 20}   # of 20 runs (seeds 0-19)
for name, runs in CURE_FREQUENCY.items():
    claim.frequency(f"{name} lowers the held-out KL", kl[name] < kl["none (section 8)"], runs, 20)
claim.frequency("all three end above early stopping alone", kl["all three"] > kl["early stopping"], 20, 20)
claim.range("log-scale of x1 in the Affine after weight decay", cured["weight decay"][1]["layers"][-1]["log_scale"][0],
            0.60, 0.72, fmt=".2f")

# %% [markdown]
# **What the table says.** The uncured model memorised: its training NLL ended below the true
# density's own NLL on the same 1024 points (on 19 of 20 runs), and its held-out NLL on the
# curve's 5000 points was lowest early and then climbed, by more than 0.01 nats (on 20 of 20).
# On the 100,000 fresh points the median of $\log p - \log q$ stays between -0.07 and 0.11
# nats: on a typical point the overfit
# flow is about as good as the truth. The damage sits on a few points: tens to hundreds of the
# 100,000 are more than 5 nats off, and on some runs a few of them are off by thousands of nats,
# so the KL ranges over orders of magnitude from run to run while the capped KL does not.
#
# - **Early stopping** lowered the held-out KL on 20 of 20 runs, and it is the cheapest cure:
#   it stops after a couple of hundred steps.
# - **A smaller model** lowered it on 20 of 20 runs too. It has fewer ways to memorise, but
#   also fewer ways to fit, and it too can put a handful of points hopelessly off.
# - **Weight decay** lowered it on only 14 of 20 runs: no reliable cure here. It also shrinks
#   the standardising `Affine`: its log-scale for $x_1$ ends at 0.60 to 0.72 instead of about
#   1.8, undoing much of section 4.
# - **All three together** ended above early stopping alone on 20 of 20 runs. The small,
#   decayed model learns slowly; cures do not simply add up.
#
# Full-batch Adam at a constant step size does not always descend smoothly, either. When the
# *training* NLL jumps up together with the held-out one, that is the optimiser overshooting,
# not memorising: the training NLL is what tells the two apart.

# %% [markdown]
# Where the damage sits: the log-density of the uncured model and of the early-stopped one,
# with the training points (black) and the held-out points each gets more than 5 nats wrong
# (red). Look along the edges of the cloud of training points and beyond its two ends.

# %%
LOG_Q_FLOOR = -12.0                   # colours stop here: the pinched regions go far below
X1, X2, points = grid(XLIM, YLIM, GRID)
panels = {"no cure": ("none (section 8)", big_flow, big_params),
          "early stopping": ("early stopping", *cured["early stopping"])}
log_q = {name: np.maximum(model.log_prob(p, points), LOG_Q_FLOOR).reshape(X1.shape)
         for name, (row, model, p) in panels.items()}
top = max(values.max() for values in log_q.values())                # one colour scale for both panels
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, (name, (row, model, p)) in zip(axes, panels.items()):
    image = ax.pcolormesh(X1, X2, log_q[name], shading="auto", cmap="viridis", vmin=LOG_Q_FLOOR, vmax=top)
    off = np.abs(rows[row][2]) > CAP
    ax.scatter(x_train[:, 0], x_train[:, 1], s=1, c="k", label=f"training points ({NUM_TRAIN})")
    ax.scatter(x_eval[off, 0], x_eval[off, 1], s=8, c="r", marker="x",
               label=f"held-out points > 5 nats off ({np.sum(off)} of {NUM_HELD_OUT})")
    ax.set_xlim(*XLIM)
    ax.set_ylim(*YLIM)
    ax.set_title(f"{name}: log q(x)")
    ax.set_xlabel("$x_1$")
    ax.legend(fontsize=8, loc="lower right")
axes[0].set_ylabel("$x_2$")
fig.colorbar(image, ax=axes, label=f"log q(x) (floored at {LOG_Q_FLOOR:g})")
savefig(fig, "ch03_overfit_damage.png", args.figures_dir)

# %% [markdown]
# The loss curves. Left, the run without a cure: the training NLL (on all 1024 points) and the
# held-out NLL (on fresh points), with the entropy, which no model can beat on fresh data,
# drawn as the floor, and (dotted) the true density's own NLL on the 1024 training points,
# which sits off the entropy by sampling noise alone. A training NLL below *that* line means the
# flow fits these particular points better than the truth does: memorising; a held-out NLL
# that turns round and climbs is the price. Read the printed
# numbers of section 8 to see how far this run got within the chapter's step budget. Right,
# the cure that worked on every run, early stopping: the validation NLL (on the 20% held back)
# is checked every `EVAL_EVERY` steps, training stops `PATIENCE` checks after its minimum, and
# `fit` returns the parameters at that minimum.

# %%
def running_mean(values, width):
    values = values[np.isfinite(values)]
    return np.convolve(values, np.ones(width) / width, mode="valid")


fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].plot(overfit_curve[:, 0], overfit_curve[:, 1], label=f"training NLL ({NUM_TRAIN} points)")
axes[0].plot(overfit_curve[:, 0], overfit_curve[:, 2], label=f"held-out NLL ({NUM_CURVE} fresh points)")
axes[0].set_title(f"no cure: {BIG_COUPLINGS} couplings, hidden {BIG_HIDDEN}")
history = histories["early stopping"]
width = min(50, max(1, int(np.sum(np.isfinite(history["loss"]))) // 4))
train_curve = running_mean(history["loss"], width)
axes[1].plot(np.arange(len(train_curve)) + width - 1, train_curve,
             label=f"training loss (batches of {min(OVERFIT_BATCH_SIZE, len(x_fit))}, running mean of {width})")
steps, values = np.array(history["validation"]).T
axes[1].plot(steps, values, "o-", ms=3, label=f"validation NLL ({num_validation} held-back points)")
if history["best_step"] is not None:
    axes[1].axvline(history["best_step"], color="gray", ls=":", label="best validation: parameters kept")
axes[1].set_title(f"early stopping: the same model, patience {PATIENCE}")
for ax in axes:
    ax.axhline(target.entropy, color="k", ls="--", label=f"entropy {target.entropy:.5f} (the floor)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
axes[0].axhline(true_train_nll, color="gray", ls=":",
                label=f"true density on the training set, {true_train_nll:.4f}")
axes[0].legend(fontsize=8)
for ax in axes:
    ax.set_ylim(target.entropy - 0.15, target.entropy + 0.25)         # zoomed in: step 0 is off the top
    ax.set_ylabel("NLL (nats), zoomed in")
savefig(fig, "ch03_loss_curves.png", args.figures_dir)
print(f"chapter wall time: {time.perf_counter() - start:.1f} s (after imports)")

# %% [markdown]
# ## Summary
#
# - A coupling layer keeps half its input and rescales and shifts the other half by networks
#   of the kept half. Its Jacobian is triangular, so the log-det is $\sum s$, and its inverse
#   costs one more pass through the same networks: the networks never need inverting.
# - Alternating masks let consecutive couplings change complementary halves; read layer by
#   layer, the inverse flow straightens the banana and squeezes it into $N(0, I)$.
# - Standardising the data with an `Affine` set from its mean and std puts the couplings'
#   inputs at unit scale; on this target, which spans tens of units, it lowered the KL after
#   200 steps on 20 of 20 runs (section 4).
# - Trained on fresh samples, the flow's held-out gap is the KL divergence. Four couplings
#   with relu conditioners took it to at most 0.0022 in 1100 steps, with a step size that
#   warms up and then decays along a cosine so that the parameters settle (section 5).
# - Trained again and again on 1024 fixed points, a flow can only *lose* on fresh data. The
#   signs to watch are a training NLL below the true density's own NLL on the same points and
#   a held-out NLL that climbs. The damage sits on a few points, along the edges of the
#   training cloud and beyond its ends, where a point can be thousands of nats off: enough to
#   carry the KL alone, so that it swings by orders of magnitude from run to run. Read it with
#   statistics a handful of points cannot carry: the median (between -0.07 and 0.11 nats: a
#   typical point is fine), the capped KL, and the count of points more than 5 nats off. The
#   soft bound on the log-scale, $|s| < s_{max}$, keeps every log-det finite, not small.
# - The cures are measured, not assumed, on the same held-out points, and counted over runs:
#   early stopping lowered the held-out KL on 20 of 20 runs, a smaller model on 20 of 20,
#   weight decay (which also shrinks the standardising `Affine`) on only 14; all three
#   together ended above early stopping alone on 20 of 20 (section 9).
# - The tutorial we follow names its directions the other way round: its layers map data to
#   noise, so its "forward" is our `inverse`.
#
# ## Exercises
#
# 1. Put the standardising `Affine` at the *other* end of the flow (the first layer in the
#    generative direction). Why does it no longer help? (Which coordinates do the couplings see?)
# 2. Keep the standardising `Affine` fixed: wrap the loss so that it is called with the data
#    statistics spliced into `params`, and compare the held-out KL with the trainable version.
#    Then do the same in section 9: does weight decay help more often once it cannot shrink the
#    `Affine`? (Count over a few seeds, and read the capped KL too.)
# 3. Put the tutorial's `LeakyReLU(0.9)` back between consecutive couplings, then try
#    `LeakyReLU(alpha, learnable=True)`. Which slopes does the flow learn? What happens to the
#    held-out KL at equal steps?
# 4. With 2 couplings only, the banana can be represented exactly, given a $t$ that is
#    quadratic in $x_2$: which $s$ and $t$ does it need? Train it and print $t(x_2)$ against
#    $x_2^2 / 4$ in standardised units. (relu units can only follow a parabola in straight pieces.)
# 5. Set `OVERFIT_STEPS = 5000` (several minutes) and rerun sections 8 and 9. When does the
#    training NLL cross the entropy? How high does the held-out NLL climb, and how many
#    held-out points end up more than 5 nats off? Then loosen the big model's bound on the
#    log-scale, `AffineCoupling(..., s_max=10)`: does it overfit sooner, and how far off is the
#    worst held-out point?
# 6. Train the big model on 4096 fixed points instead of 1024. How does the overfitting change?
#    Does early stopping still pay?
# 7. Rerun the chapter with a few other seeds (`--seed 40`, `--seed 41`, ...) and tabulate the
#    uncured model's KL, capped KL and median. Which moves by orders of magnitude, and why? Find
#    the held-out point that carries most of the KL on the worst run: where is it, relative to
#    the training set's largest $x_1$ (section 1)?
# 8. Try weight decays of 0.1, 0.3 and 3 in section 9. Does any of them lower the held-out KL on
#    every seed you try? Which of the table's columns does weight decay move most?
#
# ## Notes on the numbers
#
# Every bound and range in this chapter was set on seeds 0-19 by the rule in `tinyflow/claims.py`
# (a bound: the worst run plus half the spread), every frequency counts those 20 runs, and the
# largest $x_1$ of the training set is the central 99.9% of its computed distribution. Checked on
# seeds 20-29 with `python chapters/seeds.py ch03 --seeds 20-29 --check`: 50 values, 0 outside
# the text's claims, and every frequency held (weight decay helped on 8 of 10, all three ended
# above early stopping alone on 9 of 10). Re-checked after the library's fused coupling: seeds
# 20-29, 50 values, 0 outside, every frequency held (weight decay helped on 7 of 10, all three
# ended above early stopping alone on 9 of 10). Two numbers are printed but claim nothing, because
# over seeds 0-19 they swing too much for a bound to say anything (the rule gave more than 1.5
# times the worst run): the standardised KL after 200 steps (0.0115 to 0.0989) and the
# early-stopped model's KL (0.016 to 0.053). Their lessons are the frequencies beside them.
#
# How the recipe got here. An earlier version of section 5 ran 800 steps at a constant rate, then
# 300 at a tenth of it with batches of 512: on five seeds it ended at a KL of 0.0015 to 0.0055,
# one cosine run of 1100 steps at 0.0007 to 0.0012, for less computation. Section 9 once counted
# a cure as helping when it lowered the KL by more than two paired SEs, over 10 runs: weight
# decay "helped on 9 of 10", then raised the KL on two of three new seeds, because its own KL,
# like the uncured model's, is now and then carried by a few points. Decays of 0.3, 0.5, 2 and 3
# did no better than 1.0 on five seeds. In trial runs on eight seeds, standardising the data
# outside the flow (so that weight decay cannot shrink the `Affine`) made weight decay worse,
# not better, and a step size of 5e-3 instead of 2e-3 made the uncured model overfit harder but
# also gave the smaller model a catastrophe; we kept 2e-3. The relu/tanh timing that section 3
# once printed moved to `python -m tinyflow.benchmark`.
#
# Re-checked after the speed work of issue 19 (the faster fused coupling): the same maths rounded
# differently, so every run follows another trajectory, as it would on another machine. On fresh
# seeds 40-44 (`python chapters/seeds.py ch03 --seeds 40-44 --check`): 25 values, 0 outside, every
# frequency as stated.

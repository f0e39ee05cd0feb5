# %% [markdown]
# # Chapter 6: reverse KL — fitting a density you can only evaluate
#
# **Goal.** Fit a flow $q$ to a target $p$ we cannot sample from, knowing only its unnormalised
# density $\tilde p(x) = Z\,p(x)$. This is variational inference with a flow, and the place where
# the IAF layer shines: reverse-KL training needs samples of $q$ *and* their $\log q$, which an
# IAF gives in one forward pass.
#
# **Key equation.** With $x = f(\varepsilon)$, $\varepsilon \sim N(0, I)$,
#
# $$\mathcal L(q) = \mathbb E_{x \sim q}\big[\log q(x) - \log \tilde p(x)\big]
#   = \mathrm{KL}(q\,\|\,p) - \log Z \;\ge\; -\log Z .$$
#
# The loss needs no sample of $p$ and no $Z$. Its floor is $-\log Z$, so **a negative loss is not a
# bug**; and once $\log Z$ is known (here by quadrature) the loss becomes the exact
# $\mathrm{KL}(q\,\|\,p) = \mathcal L + \log Z$.
#
# **Builds on.** `Flow`, `AffineAutoregressive` (IAF), `AffineCoupling`, `Reverse`, `fit` (with its
# warm-up, cosine schedule and callback) and the two losses `forward_kl`, `reverse_kl` of
# `tinyflow/train.py`.
#
# **Introduces.** `tinyflow/energies.py`: Rezende & Mohamed's four test energies U1–U4, a Gaussian
# mixture, `grid_log_Z` (log Z by quadrature) and `reverse_report` (exact KL and effective sample size).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import tinyflow
from tinyflow.energies import (Energy, GaussianMixture, format_reverse_report, grid_log_Z,
                               reverse_report)
from tinyflow.plotting import chapter_args, plot_density, savefig

args = chapter_args(__doc__ or "Chapter 6: reverse KL")
claim = tinyflow.claims(quick=args.quick)  # prints a result beside the range the text states

SEED = args.seed
NUM_STEPS = 8 if args.quick else 600       # training steps per flow and target
LEARNING_RATE = 1e-2                       # the peak step size: warm-up to it, then a cosine decay
WARMUP = 2 if args.quick else 50
ANNEAL_STEPS = NUM_STEPS // 2              # section 2: the tempering exponent beta reaches 1 here
BETA_START = 0.05
BATCH_SIZE = 256                           # fresh noise eps ~ N(0, I) every step
NUM_LAYERS, HIDDEN = 4, (16,)              # small: 10 flows are trained in well under a minute
NUM_EVAL = 5_000 if args.quick else 100_000
SPACING = 0.1 if args.quick else 0.05      # the quadrature grid: cells of this side on [-8, 8]^2
HALF_WIDTH = 8.0
GRID = 60 if args.quick else 160           # pixels per side of each density panel


def streams():
    """Fresh generators for one fit: (initial parameters, training noise, evaluation). Every fit
    of a stack starts from the same parameters and sees the same noise, whatever ran before it."""
    return [np.random.default_rng([SEED, k]) for k in range(3)]

# %% [markdown]
# ## 1. Four targets known up to a constant
#
# `Energy(k)` is Rezende & Mohamed's $U_k$ (Table 1 of their 2015 paper; the formulas are in the
# docstring of `tinyflow/energies.py`) with $\log \tilde p = -U_k$. U2–U4 are periodic along
# $z_1$, so $e^{-U}$ has no finite integral; we add the quartic envelope $\tfrac12 (z_1/3)^4$ to
# them: flat in the middle (0.1 at $|z_1| = 2$), steep outside, so the paper's window
# $[-4, 4]^2$ keeps 95-97% of the mass (printed below). A Gaussian envelope
# $N(z_1; 0, 4^2)$, as gentle in the middle (0.125 at $|z_1| = 2$), would leave 32% of the mass
# outside the window: the $z_2$-integral of U2–U4 is the same at every $z_1$, so the mass
# outside is $P(|z_1| > 4)$ under $N(0, 4^2)$, $\operatorname{erfc}(1/\sqrt2)$.
#
# $\log Z$ comes from the midpoint rule on a grid, summed in log space:
# $\log Z = \operatorname{logsumexp}_{\text{cells}} \log\tilde p(z) + \log h^2$. For a smooth
# density that has died out before the edge of the box, this converges faster than any power of
# the spacing $h$. We check it twice: halve $h$, and widen the box. U2–U4 also have a closed
# form (integrate the Gaussians in $z_2$ first), a third check.

# %%
energies = [Energy(k) for k in (1, 2, 3, 4)]
log_Z = {}
for energy in energies:
    log_Z[energy.name] = grid_log_Z(energy.log_prob, HALF_WIDTH, SPACING)
    finer = grid_log_Z(energy.log_prob, HALF_WIDTH, SPACING / 2)
    wider = grid_log_Z(energy.log_prob, 1.5 * HALF_WIDTH, SPACING)
    mass = [np.exp(grid_log_Z(energy.log_prob, w, SPACING) - log_Z[energy.name]) for w in (4.0, 5.0)]
    closed = ("" if energy.log_Z is None else
              f", closed form {energy.log_Z:.8f} (differs by {abs(energy.log_Z - log_Z[energy.name]):.1e})")
    print(f"log Z({energy.name}) = {log_Z[energy.name]:.8f}: halving the spacing changes it by "
          f"{abs(finer - log_Z[energy.name]):.1e}, a box of [-12, 12]^2 by "
          f"{abs(wider - log_Z[energy.name]):.1e}{closed}; mass inside [-4, 4]^2 {mass[0]:.4f}, "
          f"inside [-5, 5]^2 {mass[1]:.4f}")
print(f"a Gaussian envelope N(z1; 0, 4^2) would leave erfc(1/sqrt 2) = {math.erfc(1 / math.sqrt(2)):.4f} "
      f"of the mass at |z1| > 4")

# %% [markdown]
# ## 2. Reverse KL with IAF and coupling stacks
#
# The IAF stack alternates `AffineAutoregressive` with `Reverse`, so each coordinate in turn
# conditions the other; the coupling stack alternates masks. Both start at the identity (their
# last layers are zero), so $q$ starts as $N(0, I)$. `reverse_kl(flow, log_p)` pushes the noise
# through the flow and averages $\log q - \log\tilde p$; `fit` draws fresh noise every step, warms
# the step size up over the first 50 steps and then lets it fall along a cosine to zero.
#
# **Annealing.** U1's mass sits in two arcs around $(\pm 2, 0)$; a quarter of the way round the
# ring, at $(0, \pm 2)$, the density is below 1% of its peak, and at the centre it is $e^{-17}$ of
# it (printed below). Started at $N(0, I)$, plain reverse KL often commits in its first steps to the
# arc its noise happens to favour, and nothing afterwards pulls $q$ across the empty stretch: it
# keeps one arc, and its KL stalls near $\log 2$ (exercise 2). The cure Rezende & Mohamed use in
# their experiments is *annealing*: train on $\beta \log\tilde p$, with $\beta$ rising to 1.
# At $\beta = 0.05$ the ring's gaps keep 78% and its centre 42% of the peak density, so $q$ first
# spreads over both arcs; as $\beta$ grows, each arc keeps the samples that lie near it.
# `annealed_fit` raises $\beta$ linearly from 0.05 to 1 over the first half of the steps, through
# `fit`'s callback; the last half trains on the target itself.
#
# After training, `reverse_report` judges $q$ on fresh samples $x \sim q$ with importance
# weights $w = \tilde p(x) / q(x)$:
#
# * the exact $\mathrm{KL}(q\,\|\,p) = \text{loss} + \log Z$, with its Monte-Carlo standard error;
# * the effective sample size $\mathrm{ESS}/n = (\sum w)^2 / (n \sum w^2)$: the fraction of the
#   samples that count once reweighted (1 when $q = p$), computed with logsumexp so no $w$ overflows;
# * $\log \frac1n \sum w$, an importance-sampling estimate of $\log Z$ to set beside the quadrature.

# %%
u1 = energies[0].log_prob(np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
ratios = np.exp(u1[1:] - u1[0])
print(f"U1: density at (0, 2) and at (0, 0) over the density at (2, 0): {ratios[0]:.4f} and "
      f"{ratios[1]:.1e}; raised to beta = {BETA_START}: {ratios[0] ** BETA_START:.2f} and "
      f"{ratios[1] ** BETA_START:.2f}")


def iaf_stack():
    layers = [tinyflow.AffineAutoregressive(HIDDEN)]
    for _ in range(NUM_LAYERS - 1):
        layers += [tinyflow.Reverse(), tinyflow.AffineAutoregressive(HIDDEN)]
    return tinyflow.Flow(tinyflow.StandardNormal(2), layers)


def coupling_stack():
    masks = tinyflow.alternating_masks(2, NUM_LAYERS)
    return tinyflow.Flow(tinyflow.StandardNormal(2), [tinyflow.AffineCoupling(m, HIDDEN) for m in masks])


def annealed_fit(flow, log_p, init_rng, train_rng):
    """Reverse KL on beta * log_p, with beta rising linearly from BETA_START to 1 over ANNEAL_STEPS."""
    beta = [BETA_START]                      # the loss reads it at every step; the callback raises it

    def raise_beta(step, params, loss):
        beta[0] = min(1.0, BETA_START + (1 - BETA_START) * step / ANNEAL_STEPS)
    loss = tinyflow.reverse_kl(flow, lambda x: beta[0] * log_p(x))
    return tinyflow.fit(loss, flow.init(init_rng), tinyflow.gaussian_noise(2), train_rng,
                        num_steps=NUM_STEPS, batch_size=BATCH_SIZE, step_size=LEARNING_RATE,
                        schedule="cosine", warmup=WARMUP, callback=raise_beta)


def below_wave(z):
    """True more than 1 below the main wave z2 = sin(pi z1 / 2): where the second branch of U3 and U4 lies."""
    return z[:, 1] < np.sin(np.pi * z[:, 0] / 2) - 1


# the ranges the text states: min and max over seeds 0-4, AVX-512 kernels on and off (chapters/seeds.py)
KL_RANGE = {("U1", "IAF"): (0.143, 0.225), ("U1", "coupling"): (0.118, 0.158),
            ("U2", "IAF"): (0.085, 0.132), ("U2", "coupling"): (0.065, 0.154),
            ("U3", "IAF"): (0.295, 0.470), ("U3", "coupling"): (0.311, 0.420),
            ("U4", "IAF"): (0.356, 0.370), ("U4", "coupling"): (0.326, 0.380)}
ESS_RANGE = {("U1", "IAF"): (0.006, 0.552), ("U1", "coupling"): (0.336, 0.723),
             ("U2", "IAF"): (0.200, 0.492), ("U2", "coupling"): (0.003, 0.594),
             ("U3", "IAF"): (0.042, 0.214), ("U3", "coupling"): (0.108, 0.331),
             ("U4", "IAF"): (0.010, 0.045), ("U4", "coupling"): (0.004, 0.053)}
RIGHT_RANGE = {"IAF": (0.446, 0.500), "coupling": (0.492, 0.552)}
BRANCH_RANGE = {("U3", "IAF"): (0.027, 0.180), ("U3", "coupling"): (0.033, 0.205),
                ("U4", "IAF"): (0.035, 0.050), ("U4", "coupling"): (0.032, 0.040)}
fits = {}
for energy in energies:
    if energy.name in ("U3", "U4"):              # p's share there, by the same quadrature as log Z
        on_branch = grid_log_Z(lambda z: np.where(below_wave(z), energy.log_prob(z), -np.inf),
                               HALF_WIDTH, SPACING)
        print(f"{energy.name}: p puts {np.exp(on_branch - log_Z[energy.name]):.3f} of its mass on the "
              f"second branch (more than 1 below the main wave)")
    for kind, build in (("IAF", iaf_stack), ("coupling", coupling_stack)):
        flow = build()
        init_rng, train_rng, eval_rng = streams()
        params, history = annealed_fit(flow, energy.log_prob, init_rng, train_rng)
        report = reverse_report(flow, params, energy.log_prob, log_Z[energy.name], eval_rng, NUM_EVAL)
        x = flow.sample(params, eval_rng, NUM_EVAL)
        fits[energy.name, kind] = flow, params, report, x[:2000]
        last = np.nanmean(history["loss"][-50:])
        print(f"{energy.name} {kind:8s} final training loss {last:.4f} (mean of the last 50 steps) "
              f"next to -log Z = {-log_Z[energy.name]:.4f}")
        print("   " + format_reverse_report(report, f"{energy.name} {kind}"))
        claim(f"{energy.name} {kind} KL(q||p)", report["kl"], *KL_RANGE[energy.name, kind], fmt=".3f")
        claim(f"{energy.name} {kind} ESS", report["ess"], *ESS_RANGE[energy.name, kind], fmt=".1%")
        if energy.name == "U1":              # p puts half its mass on each side: U1 is even in z1
            claim(f"U1 {kind}: share of q's samples with z1 > 0", np.mean(x[:, 0] > 0), *RIGHT_RANGE[kind],
                  fmt=".3f")
        if energy.name in ("U3", "U4"):
            claim(f"{energy.name} {kind}: share of q's samples on the second branch", np.mean(below_wave(x)),
                  *BRANCH_RANGE[energy.name, kind], fmt=".3f")

# %%
kls = [report["kl"] / report["kl_se"] for _, _, report, _ in fits.values()]
print(f"smallest KL(q||p) / its standard error over the {len(kls)} fits: {min(kls):.1f} "
      f"(a loss below -log Z would make it negative)")
claim("smallest KL(q||p) / its standard error", min(kls), 55, 67, fmt=".0f")

# %% [markdown]
# Every range in this text is the least and the most measured over seeds 0-4 (each run with
# numpy's AVX-512 kernels on and off, `chapters/seeds.py`); the run prints its own value beside it.
#
# No loss goes below $-\log Z$: the gap between them is the KL, positive in every fit, at least
# 55 standard errors above zero. The ESS is the stricter judge. It punishes $q$ for missing mass
# that $p$ has, because a missed region shows up as rare samples with huge weights, and so it
# hangs on a handful of samples: from seed to seed a fit's KL moves by at most a factor of 2.4,
# its ESS by up to a factor of 200 (coupling on U2: KL 0.065-0.154, ESS 0.3%-59.4%).
#
# The figure shows, per energy, the target, each learned density $q$ and samples of $q$. With
# annealing, both stacks cover both arcs of U1 (44.6-55.2% of $q$'s samples on the right, where
# $p$ has exactly half), joined by a thin bridge across one of the ring's gaps, and both follow
# U2's wave: KL 0.065-0.225 on U1 and U2. U3 and U4 are harder (KL 0.295-0.470). On U4 both stacks
# keep to the main wave and leave out most of the second branch: 3.2-5.0% of $q$'s samples lie
# more than 1 below the main wave, where $p$ has 18% of its mass. On U3 the two branches part only
# around $z_1 = 1$, and no fit traces the loop they enclose there: $q$ keeps to the main wave or
# smears a blob over the loop (2.7-20.5% of its samples below the main wave, against $p$'s 14%).
# Leaving out a branch is reverse KL's **mode seeking**, the subject of the next section: leaving
# out mass costs $q$ little, putting mass where $p$ has none costs a lot.

# %%
def window(name):
    return (-4, 4) if name == "U1" else (-5, 5)


fig, axes = plt.subplots(4, 5, figsize=(16, 13))
for row, energy in zip(axes, energies):
    lim = window(energy.name)
    plot_density(row[0], energy.log_prob, lim, lim, GRID, title=f"target exp(-{energy.name})")
    for col, kind in ((1, "IAF"), (3, "coupling")):
        flow, params, report, x = fits[energy.name, kind]
        plot_density(row[col], lambda x: flow.log_prob(params, x), lim, lim, GRID,
                     title=f"{kind} q: KL(q||p) = {report['kl']:.3f}")
        row[col + 1].scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        row[col + 1].set(xlim=lim, ylim=lim, aspect="equal",
                         title=f"{kind} samples: ESS {100 * report['ess']:.1f}%")
    for ax in row:                           # fixed ticks: cheaper to draw than automatic ones
        ax.set(xlabel="z1", ylabel="z2", aspect="equal", xticks=[-4, 0, 4], yticks=[-4, 0, 4])
fig.suptitle("Reverse KL on Rezende & Mohamed's energies: target, learned density, samples", y=0.995)
fig.subplots_adjust(left=0.04, right=0.99, bottom=0.04, top=0.95, wspace=0.3, hspace=0.3)
savefig(fig, "ch06_energies.png", args.figures_dir)

# %% [markdown]
# ## 3. Mode covering versus mode seeking
#
# The two KLs fail differently. Forward KL, $\mathbb E_p[\log p - \log q]$, is infinite wherever
# $q = 0 < p$: $q$ must **cover** every mode, and pays little for smearing mass between them.
# Reverse KL, $\mathbb E_q[\log q - \log p]$, is infinite wherever $p = 0 < q$: $q$ must avoid the
# gaps, and pays only $\log$(number of modes) at most for dropping whole modes — it **seeks** a mode.
#
# The target below has four well-separated modes ($\sigma = 0.5$, 10 $\sigma$ apart) and can be
# sampled, so we can train the IAF stack of section 2 both ways and measure both divergences.
# Both fits start from the same parameters and use the same step sizes, and neither is annealed.
# (Forward KL needs $\log q$ at samples of $p$, the IAF's slow direction: $D = 2$ passes here.)
# For each fit we count the share of $q$'s samples nearest each mode, and the share of mass
# farther than $3\sigma$ from every mode (the target puts $e^{-9/2} = 1.1\%$ there).

# %%
mixture = GaussianMixture([[-2.5, -2.5], [-2.5, 2.5], [2.5, -2.5], [2.5, 2.5]], sigma=0.5)


def mode_shares(x):
    """(fraction of x nearest each mean, fraction farther than 3 sigma from every mean)."""
    distance = np.sqrt(np.sum((x[:, None, :] - mixture.means[None]) ** 2, axis=2))
    nearest = np.bincount(np.argmin(distance, axis=1), minlength=len(mixture.means)) / len(x)
    return nearest, np.mean(distance.min(axis=1) > 3 * mixture.sigma)


modes = {}
for kind in ("forward KL", "reverse KL"):
    flow = iaf_stack()
    init_rng, train_rng, eval_rng = streams()          # the same start for both fits
    if kind == "forward KL":
        loss, data = tinyflow.forward_kl(flow), mixture.sample
    else:
        loss, data = tinyflow.reverse_kl(flow, mixture.log_prob), tinyflow.gaussian_noise(2)
    params, _ = tinyflow.fit(loss, flow.init(init_rng), data, train_rng, num_steps=NUM_STEPS,
                             batch_size=BATCH_SIZE, step_size=LEARNING_RATE, schedule="cosine",
                             warmup=WARMUP)                # no annealing here: plain reverse KL
    nearest, between = mode_shares(flow.sample(params, eval_rng, NUM_EVAL))
    forward = tinyflow.held_out_report(flow, params, mixture, eval_rng, NUM_EVAL)
    reverse = reverse_report(flow, params, mixture.log_prob, 0.0, eval_rng, NUM_EVAL)
    modes[kind] = flow, params, nearest, between, flow.sample(params, eval_rng, 500)
    print(f"{kind} fit: share of q's samples nearest each mode {np.round(nearest, 3).tolist()}, "
          f"farther than 3 sigma from every mode {between:.3f}")
    print("   " + tinyflow.format_report(forward, "KL(p||q) on samples of p"))
    print("   " + format_reverse_report(reverse, "KL(q||p) on samples of q"))
    if kind == "forward KL":
        claim("forward KL: smallest share of a mode", nearest.min(), 0.187, 0.228, fmt=".3f")
        claim("forward KL: largest share of a mode", nearest.max(), 0.278, 0.369, fmt=".3f")
        claim("forward KL: mass farther than 3 sigma from every mode", between, 0.277, 0.345, fmt=".3f")
        claim("forward KL: KL(p||q)", forward["kl"], 0.59, 0.70, fmt=".2f")
        claim("forward KL: KL(q||p)", reverse["kl"], 1.77, 2.29, fmt=".2f")
    else:
        claim("reverse KL: largest share of a mode", nearest.max(), 1.000, 1.000, fmt=".3f")
        claim("reverse KL: mass farther than 3 sigma from every mode", between, 0.011, 0.014, fmt=".3f")
        claim("reverse KL: KL(q||p)", reverse["kl"], 1.387, 1.390, fmt=".3f")
        claim("reverse KL: KL(p||q)", forward["kl"], 19, 37, fmt=".0f")
        claim("reverse KL: log Z by importance sampling", reverse["log_Z_is"], -1.386, -1.386, fmt=".3f")
        claim("reverse KL: ESS", reverse["ess"], 0.962, 0.999, fmt=".1%")
target_nearest, target_between = mode_shares(mixture.sample(np.random.default_rng([SEED, 3]), NUM_EVAL))
print(f"target: share nearest each mode {np.round(target_nearest, 3).tolist()}, "
      f"farther than 3 sigma {target_between:.3f}")
print(f"a q equal to p restricted to k of the 4 modes would have KL(q||p) = log(4/k): "
      f"{np.log(4):.4f} for k = 1, {np.log(2):.4f} for k = 2, {np.log(4 / 3):.4f} for k = 3; "
      f"and KL(p||q) = infinity")

# %% [markdown]
# Read the two fits against each other. The forward-KL fit covers all four modes, each with
# 18.7-36.9% of its samples, but lays a thick band of mass between them (27.7-34.5% of its
# samples lie farther than $3\sigma$ from every mode); its KL(p||q) is small (0.59-0.70) and
# its KL(q||p) large (1.77-2.29).
#
# The reverse-KL fit keeps one mode and drops the other three, on every one of the ten runs: its
# share of samples nearest one mode prints as 1.000, and 1.1-1.4% of them lie farther than
# $3\sigma$ from it, about what $p$ itself has there. Within its mode it is nearly exact,
# so its KL(q||p), 1.387-1.390, is just above $\log 4 = 1.386$, the least that keeping one mode
# of four can cost; its KL(p||q) is enormous (19-37), because samples of $p$ from the dropped
# modes are nearly impossible under $q$. Which mode it keeps changes with the seed (on seeds 0-4,
# the first, fourth, second, fourth and third in the printed order); how many it keeps can
# change too, if rarely: over seeds 0-39 it kept one on 38 and split between two or three on the
# other two (try `--seed 30`).
#
# Its importance-sampling estimate of $\log Z$ is $-1.386 = \log\frac14$ on every run instead
# of the true 0, with an ESS of 96.2-99.9%: by $q$'s own samples, reweighted, $q$ looks like a
# near-perfect sampler of a target with a quarter of the mass. Mass that $q$ never visits is
# invisible to $q$'s samples, and no diagnostic computed from them alone can reveal it. Same flow,
# same start, same step sizes: only the direction of the KL differs.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
lim = (-5, 5)
plot_density(axes[0], mixture.log_prob, lim, lim, GRID, title="target: 4 equal modes")
for ax, kind in zip(axes[1:], ("forward KL", "reverse KL")):
    flow, params, nearest, between, x = modes[kind]
    plot_density(ax, lambda x: flow.log_prob(params, x), lim, lim, GRID)
    ax.scatter(x[:, 0], x[:, 1], s=2, c="white", alpha=0.5)
    ax.set_title(f"{kind} fit: mode shares {np.round(nearest, 2).tolist()}\n"
                 f"{100 * between:.1f}% of mass between modes")
for ax in axes:
    ax.set(xlabel="x1", ylabel="x2", aspect="equal", xticks=[-4, 0, 4], yticks=[-4, 0, 4])
fig.suptitle("Forward KL covers the modes, reverse KL seeks them (density; white dots: samples of q)")
fig.subplots_adjust(left=0.05, right=0.98, bottom=0.1, top=0.82, wspace=0.25)
savefig(fig, "ch06_modes.png", args.figures_dir)

# %% [markdown]
# ## Summary
#
# * Reverse KL fits $q$ to an unnormalised $\tilde p$: the loss $\mathbb E_q[\log q - \log\tilde p]$
#   needs samples of $q$ with their $\log q$ (one IAF pass) and no samples of $p$.
# * Its floor is $-\log Z$, so negative losses are expected; with $\log Z$ from quadrature the
#   loss turns into the exact $\mathrm{KL}(q\,\|\,p)$, and the ESS says how usable $q$ is as an
#   importance sampler.
# * Reverse KL commits early: from $N(0, I)$ it tends to settle on the part of $p$ its first
#   steps lean towards. Annealing, training on $\beta\log\tilde p$ with $\beta$ rising to 1,
#   lets $q$ spread over the whole target first; it is what makes the fits of U1 cover both arcs.
# * Forward KL covers every mode and smears mass between them; reverse KL avoids the gaps and
#   drops whole modes (here three of four, $\mathrm{KL}(q\,\|\,p) \approx \log 4$), and the
#   importance weights of its own samples cannot tell.
#
# ## Exercises
#
# 1. Replace the quartic envelope of U2 by a Gaussian $N(z_1; 0, 4^2)$ factor. Compute the new
#    $\log Z$ by quadrature and in closed form. How much wider must the grid be?
# 2. Train U1 without annealing (`BETA_START = 1.0`) on seeds 0-4. On how many runs does $q$
#    keep both arcs, with each stack? Why does a one-arc fit stall near KL = $\log 2$?
# 3. Train U3 with 8 layers, or with hidden (64,). How do the KL and the ESS move? Which of the two
#    responds more, and why is the ESS the harsher judge?
# 4. Train a MAF (`Invert(AffineAutoregressive())`) by reverse KL. Time a step and explain the
#    difference from the IAF with the cost notes of `tinyflow/autoregressive.py`.
# 5. Anneal the reverse-KL fit of the mixture as in section 2 (`annealed_fit`). How many modes
#    does it keep on seeds 0-4? What stops it from keeping all four? (Draw $q$ at the start,
#    halfway through the annealing and at the end, with `fit`'s callback.)
# 6. Show that keeping $k$ of $K$ equal, well-separated modes, each exactly, costs reverse KL
#    $\log\frac{K}{k}$ nats, and check it against the numbers printed above.

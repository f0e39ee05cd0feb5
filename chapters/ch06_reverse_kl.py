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
# **Builds on.** `Flow`, `AffineAutoregressive` (IAF), `AffineCoupling`, `Reverse`, `fit` and the
# two losses `forward_kl`, `reverse_kl` of `tinyflow/train.py`.
#
# **Introduces.** `tinyflow/energies.py`: Rezende & Mohamed's four test energies U1–U4, a Gaussian
# mixture, `grid_log_Z` (log Z by quadrature) and `reverse_report` (exact KL and effective sample size).

# %%
import matplotlib.pyplot as plt
import numpy as np

import tinyflow
from tinyflow.energies import (Energy, GaussianMixture, format_reverse_report, grid_log_Z,
                               reverse_report)
from tinyflow.plotting import chapter_args, plot_density, savefig

args = chapter_args(__doc__ or "Chapter 6: reverse KL")

SEED = args.seed
NUM_STEPS = 8 if args.quick else 400       # training steps per flow and target
LEARNING_RATE = 1e-2
BATCH_SIZE = 256                           # fresh noise eps ~ N(0, I) every step
NUM_LAYERS, HIDDEN = 4, (16,)              # small: 10 flows are trained in well under a minute
NUM_EVAL = 5_000 if args.quick else 100_000
SPACING = 0.1 if args.quick else 0.05      # the quadrature grid: cells of this side on [-8, 8]^2
HALF_WIDTH = 8.0
GRID = 60 if args.quick else 160           # pixels per side of each density panel
rng = np.random.default_rng(SEED)

# %% [markdown]
# ## 1. Four targets known up to a constant
#
# `Energy(k)` is Rezende & Mohamed's $U_k$ (Table 1 of their 2015 paper; the formulas are in the
# docstring of `tinyflow/energies.py`) with $\log \tilde p = -U_k$. U2–U4 are periodic along
# $z_1$, so $e^{-U}$ has no finite integral; we add the quartic envelope $\tfrac12 (z_1/3)^4$ to
# them: flat in the middle (0.1 at $|z_1| = 2$), steep outside, so the paper's window
# $[-4, 4]^2$ keeps 95-97% of the mass (printed below). A Gaussian envelope
# $N(z_1; 0, 4^2)$, as gentle in the middle, would leave about a third of the mass outside the window.
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

# %% [markdown]
# ## 2. Reverse KL with IAF and coupling stacks
#
# The IAF stack alternates `AffineAutoregressive` with `Reverse`, so each coordinate in turn
# conditions the other; the coupling stack alternates masks. Both start at the identity (their
# last layers are zero), so $q$ starts as $N(0, I)$. `reverse_kl(flow, log_p)` pushes the noise
# through the flow and averages $\log q - \log\tilde p$; `fit` draws fresh noise every step.
#
# After training, `reverse_report` judges $q$ on fresh samples $x \sim q$ with importance
# weights $w = \tilde p(x) / q(x)$:
#
# * the exact $\mathrm{KL}(q\,\|\,p) = \text{loss} + \log Z$, with its Monte-Carlo standard error;
# * the effective sample size $\mathrm{ESS}/n = (\sum w)^2 / (n \sum w^2)$: the fraction of the
#   samples that count once reweighted (1 when $q = p$), computed with logsumexp so no $w$ overflows;
# * $\log \frac1n \sum w$, an importance-sampling estimate of $\log Z$ to set beside the quadrature.

# %%
def iaf_stack():
    layers = [tinyflow.AffineAutoregressive(HIDDEN)]
    for _ in range(NUM_LAYERS - 1):
        layers += [tinyflow.Reverse(), tinyflow.AffineAutoregressive(HIDDEN)]
    return tinyflow.Flow(tinyflow.StandardNormal(2), layers)


def coupling_stack():
    masks = tinyflow.alternating_masks(2, NUM_LAYERS)
    return tinyflow.Flow(tinyflow.StandardNormal(2), [tinyflow.AffineCoupling(m, HIDDEN) for m in masks])


fits = {}
for energy in energies:
    for kind, build in (("IAF", iaf_stack), ("coupling", coupling_stack)):
        flow = build()
        params, history = tinyflow.fit(tinyflow.reverse_kl(flow, energy.log_prob), flow.init(rng),
                                       tinyflow.gaussian_noise(2), rng, num_steps=NUM_STEPS,
                                       batch_size=BATCH_SIZE, step_size=LEARNING_RATE)
        report = reverse_report(flow, params, energy.log_prob, log_Z[energy.name], rng, NUM_EVAL)
        fits[energy.name, kind] = flow, params, report
        last = np.nanmean(history["loss"][-50:])
        print(f"{energy.name} {kind:8s} final training loss {last:.4f} (mean of the last 50 steps) "
              f"next to -log Z = {-log_Z[energy.name]:.4f}")
        print("   " + format_reverse_report(report, f"{energy.name} {kind}"))

# %%
kls = [report["kl"] / report["kl_se"] for _, _, report in fits.values()]
print(f"smallest KL(q||p) / its standard error over the {len(kls)} fits: {min(kls):.1f} "
      f"(a loss below -log Z would make it negative)")

# %% [markdown]
# No loss goes below $-\log Z$: the gap between them is the KL, positive in every fit. The ESS
# is the stricter judge. It punishes $q$ for missing mass that $p$ has, because a missed region
# shows up as rare samples with huge weights, so two fits with similar KL can have very
# different ESS (compare IAF and coupling on U2).
#
# The figure shows, per energy, the target, each learned density $q$ and samples of $q$. Four
# small affine layers follow U1's ring and U2's wave, but on U3 and U4 they keep to the main wave
# and leave out most of the second branch. That is reverse KL's **mode seeking**, the subject of
# the next section: leaving out mass costs $q$ little, putting mass where $p$ has none costs a lot.

# %%
def window(name):
    return (-4, 4) if name == "U1" else (-5, 5)


fig, axes = plt.subplots(4, 5, figsize=(16, 13))
for row, energy in zip(axes, energies):
    lim = window(energy.name)
    plot_density(row[0], energy.log_prob, lim, lim, GRID, title=f"target exp(-{energy.name})")
    for col, kind in ((1, "IAF"), (3, "coupling")):
        flow, params, report = fits[energy.name, kind]
        plot_density(row[col], lambda x: flow.log_prob(params, x), lim, lim, GRID,
                     title=f"{kind} q: KL(q||p) = {report['kl']:.3f}")
        x = flow.sample(params, rng, 2000)
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
# sampled, so we can train the same coupling stack both ways (a coupling layer is one pass in both
# directions, so forward KL costs no more than reverse) and measure both divergences. For each
# fit we count the share of $q$'s samples nearest each mode, and the share of mass farther than
# $3\sigma$ from every mode (the target puts $e^{-9/2} = 1.1\%$ there).

# %%
mixture = GaussianMixture([[-2.5, -2.5], [-2.5, 2.5], [2.5, -2.5], [2.5, 2.5]], sigma=0.5)


def mode_shares(x):
    """(fraction of x nearest each mean, fraction farther than 3 sigma from every mean)."""
    distance = np.sqrt(np.sum((x[:, None, :] - mixture.means[None]) ** 2, axis=2))
    nearest = np.bincount(np.argmin(distance, axis=1), minlength=len(mixture.means)) / len(x)
    return nearest, np.mean(distance.min(axis=1) > 3 * mixture.sigma)


modes = {}
for kind in ("forward KL", "reverse KL"):
    flow = coupling_stack()                  # one pass both ways: the forward-KL fit is cheap too
    if kind == "forward KL":
        loss, data = tinyflow.forward_kl(flow), mixture.sample
    else:
        loss, data = tinyflow.reverse_kl(flow, mixture.log_prob), tinyflow.gaussian_noise(2)
    params, _ = tinyflow.fit(loss, flow.init(rng), data, rng, num_steps=NUM_STEPS,
                             batch_size=BATCH_SIZE, step_size=LEARNING_RATE)
    modes[kind] = flow, params
    nearest, between = mode_shares(flow.sample(params, rng, NUM_EVAL))
    print(f"{kind} fit: share of q's samples nearest each mode {np.round(nearest, 3).tolist()}, "
          f"farther than 3 sigma from every mode {between:.3f}")
    print("   " + tinyflow.format_report(tinyflow.held_out_report(flow, params, mixture, rng, NUM_EVAL),
                                         "KL(p||q) on samples of p"))
    print("   " + format_reverse_report(reverse_report(flow, params, mixture.log_prob, 0.0, rng, NUM_EVAL),
                                        "KL(q||p) on samples of q"))
target_nearest, target_between = mode_shares(mixture.sample(rng, NUM_EVAL))
print(f"target: share nearest each mode {np.round(target_nearest, 3).tolist()}, "
      f"farther than 3 sigma {target_between:.3f}")
print(f"a q equal to p restricted to 2 of the 4 modes would have KL(q||p) = log 2 = {np.log(2):.4f} "
      f"and KL(p||q) = infinity")

# %% [markdown]
# Read the two fits against each other. The forward-KL fit puts about a quarter of its samples
# near each mode but lays a thick band of mass between them; its KL(p||q) is small and its
# KL(q||p) large. The reverse-KL fit keeps two of the modes and drops the other two: its KL(q||p)
# is 1.10, well above $\log 2 = 0.69$, the least that dropping half the modes can cost (it also
# splits its mass unevenly, 0.35 and 0.65, between the two it keeps, and leaves 5% of it between
# the modes), while its KL(p||q) is enormous, because samples of $p$ from the dropped modes are
# nearly impossible under $q$.
# Its importance-sampling estimate of $\log Z$ comes out near $\log\frac12$ instead of 0: mass
# that $q$ never visits is invisible to $q$'s samples, and no diagnostic computed from them alone
# can reveal it. Same flow, same start, same number of steps: only the direction of the KL differs.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
lim = (-5, 5)
plot_density(axes[0], mixture.log_prob, lim, lim, GRID, title="target: 4 equal modes")
for ax, kind in zip(axes[1:], ("forward KL", "reverse KL")):
    flow, params = modes[kind]
    plot_density(ax, lambda x: flow.log_prob(params, x), lim, lim, GRID)
    x = flow.sample(params, rng, 500)
    ax.scatter(x[:, 0], x[:, 1], s=2, c="white", alpha=0.5)
    nearest, between = mode_shares(flow.sample(params, rng, NUM_EVAL))
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
# * Forward KL covers every mode and smears mass between them; reverse KL avoids the gaps and
#   may drop whole modes.
#
# ## Exercises
#
# 1. Replace the quartic envelope of U2 by a Gaussian $N(z_1; 0, 4^2)$ factor. Compute the new
#    $\log Z$ by quadrature and in closed form. How much wider must the grid be?
# 2. Train U3 with 8 layers, or with hidden (64,). How do the KL and the ESS move? Which of the two
#    responds more, and why is the ESS the harsher judge?
# 3. Train a MAF (`Invert(AffineAutoregressive())`) by reverse KL. Time a step and explain the
#    difference from the IAF with the cost notes of `tinyflow/autoregressive.py`.
# 4. Start the reverse-KL fit of the mixture from a wide base (scale the noise by 3). Does it find
#    more modes? Does the KL(q||p) reached go down?
# 5. Show that dropping one of $K$ equal, well-separated modes costs reverse KL only about
#    $\log\frac{K}{K-1}$ nats, and check it against the numbers printed above.

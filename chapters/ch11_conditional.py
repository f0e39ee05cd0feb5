# %% [markdown]
# # Chapter 11: conditional flows, q(x | c)
#
# **Goal.** Learn a density *given* something: $q(x \mid c)$, one flow in $x$ for every context
# $c$. Three problems whose answer we know exactly, so every fit gets an exact score:
#
# 1. chapter 5's target, $a \sim U[1, 2]$, $b \mid a \sim N(a, a)$, learned as $q(b \mid a)$;
# 2. amortised Bayesian inference on sbibm's `gaussian_linear` task, whose posterior is
#    Gaussian in closed form, trained on 1k, 10k and 100k simulations;
# 3. sbibm's `two_moons` task: a bimodal posterior made of two thin crescents, whose likelihood
#    we derive in closed form and whose posterior we compute by quadrature.
#
# **Key equation.** A conditional flow is an ordinary flow in $x$ whose layers' parameters
# depend on $c$: with $z = f^{-1}(x; c)$,
#
# $$\log q(x \mid c) = \log p_{\text{base}}(z) + \sum_k \log\left|\det \frac{\partial f_k^{-1}(\cdot\,; c)}{\partial\,\text{input}}\right|,$$
#
# and maximum likelihood on pairs $(x, c) \sim p(x, c)$ minimises the KL *averaged over contexts*:
#
# $$-\mathbb{E}_{p(x, c)} \log q(x \mid c) = \mathbb{E}_{p(c)}\Big[H\big(p(\cdot \mid c)\big) + \mathrm{KL}\big(p(\cdot \mid c)\,\|\,q(\cdot \mid c)\big)\Big].$$
#
# In simulation-based inference (SBI) the pairs are $(\theta, x)$ drawn from a prior and a
# simulator, the context is the observation $x$, and the flow $q(\theta \mid x)$ learns the
# posterior for *every* $x$ at once ("amortised", neural posterior estimation).
#
# **Builds on.** Chapter 4 (`AffineAutoregressive`, MADE, `Invert` makes a MAF), chapter 5 (the
# target, and its paired KL, at most 0.024, to beat), chapter 10 (`SplineCoupling`), and `fit`'s
# validation split and checkpoint choice (chapter 3).
#
# **Introduces.** The `context_dim=C` argument of `AffineCoupling`, `SplineCoupling`,
# `AffineAutoregressive` and `SplineAutoregressive`; `context=` in `Flow.log_prob`,
# `Flow.sample` and `Flow.sample_and_log_prob`; `fit` on a tuple of arrays `(x, c)`, or on a
# sampler returning one.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

import tinyflow
from tinyflow.plotting import chapter_args, grid, savefig

args = chapter_args(__doc__ or "Chapter 11: conditional flows")
claim = tinyflow.claims(quick=args.quick)   # prints a result beside what this text states about it
start_wall, cpu_marks = time.perf_counter(), [time.process_time()]   # CPU time at each section's end

SEED = args.seed
SCHEDULE, WARMUP, CLIP_NORM = "cosine", 5 if args.quick else 50, 10.0   # chapter 5's recipe
# section 1: q(b | a)
HIDDEN_1 = (32, 32)                         # MADE [b, a] -> 32 -> 32 -> (mu, s); b is masked out at D = 1
NUM_STEPS_1 = 30 if args.quick else 1000
LEARNING_RATE_1, BATCH_SIZE_1 = 1e-2, 512   # fresh pairs of the target every step
NUM_EVAL = 2_000 if args.quick else 100_000  # held-out pairs behind the Monte Carlo check
CH05_KL = 0.024                             # chapter 5's 16-block flow of the joint: paired KL at most this
# section 2: gaussian_linear
PRIOR_VAR = NOISE_VAR = 0.1                 # theta ~ N(0, 0.1 I), x | theta ~ N(theta, 0.1 I)
POST_VAR = 1 / (1 / PRIOR_VAR + 1 / NOISE_VAR)   # 0.05: the posterior is N(x / 2, 0.05 I)
BUDGETS = [1_000, 10_000, 100_000]          # simulated pairs, validation split included
VALIDATION_SHARE = 0.2                      # of each budget, held out for the checkpoint choice
HIDDEN_2 = (128,)
NUM_STEPS_2 = 30 if args.quick else 2000    # the same for every budget
LEARNING_RATE_2, BATCH_SIZE_2, EVAL_EVERY = 1e-2, 256, 50
NUM_OBS, NUM_POST = (10, 200) if args.quick else (100, 1000)   # held-out observations, draws each
# section 3: two moons
NUM_BLOCKS_3, HIDDEN_3, NUM_BINS_3, BOUND_3 = 4, (64, 64), 16, 4.0
NUM_STEPS_3 = 30 if args.quick else 1500
LEARNING_RATE_3, BATCH_SIZE_3 = 1e-2, 512   # fresh simulations every step
NUM_Q_SAMPLES = 2_000 if args.quick else 20_000   # draws of q behind q(B | x_o)
NUM_SIM_CHECK = 20_000 if args.quick else 200_000   # simulations behind the likelihood check
COARSE, FINE = 0.01, 3 if args.quick else 5   # posterior grid: cells of 0.01, FINE x FINE points in each
OBS_SEED = 11                               # the two-moons observations: the same on every seed
# One generator per purpose: [SEED, 0] section 1's training, [SEED, 1] its held-out pairs,
# [SEED, 2, D, n] training at dimension D on budget n, [SEED, 3, D] the held-out observations,
# [SEED, 4] the likelihood check, [SEED, 5] two-moons training, [SEED, 6, k] q's samples at observation k.
train_rng_1 = np.random.default_rng([SEED, 0])


def trapezoid(y, x):
    """Trapezoid rule along the last axis of y: sum of (y_i + y_(i+1)) / 2 * (x_(i+1) - x_i)."""
    return 0.5 * np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x), axis=-1)


def normal_log_prob(x, mean, var):
    """log N(x; mean, var), elementwise."""
    return -0.5 * np.log(2 * np.pi * var) - 0.5 * (x - mean) ** 2 / var


# %% [markdown]
# ## 1. Chapter 5's target, conditioned: $q(b \mid a)$
#
# Chapter 5 fitted the joint $p(a, b)$ with 16 coupling blocks and paid most of its KL at the hard
# edges $a = 1$ and $a = 2$. The chain rule $p(a, b) = p(a)\,p(b \mid a)$ splits the problem: we
# know $p(a) = 1$ on $[1, 2]$ exactly, so only $p(b \mid a)$ needs learning, a 1D density with the
# 1D context $a$.
#
# **Which layer.** $x = b$ is one-dimensional, so a coupling layer (which keeps half of $x$
# fixed) has nothing to condition on. A MADE at $D = 1$ has no earlier coordinates either; with
# `context_dim=1` its hidden units all see the context and nothing else, so
# `AffineAutoregressive(context_dim=1)` is
#
# $$b = \mu(a) + e^{s(a)}\, z, \qquad z \sim N(0, 1),$$
#
# a Gaussian whose mean and log-scale are two outputs of a small network of $a$. The exact
# answer, $\mu(a) = a$ and $s(a) = \tfrac12 \log a$, is in this family; the network only has to
# approximate two smooth functions on $[1, 2]$. A `SplineAutoregressive(context_dim=1)` could
# only approximate the answer: a rational-quadratic spline pushes $N(0, 1)$ to a piecewise shape,
# never exactly a Gaussian, and it is the identity outside $[-B, B]$, so its bound would have to
# reach past $b$'s range, about $[-3, 7]$, with bins to spare (exercise 1). For a Gaussian
# conditional the affine layer is the exact, smaller and cheaper choice.
#
# **Training pairs.** `fit` takes a sampler that returns a tuple `(x, c)`: here `(b, a)` as two
# `(N, 1)` arrays, drawn fresh every step, and `forward_kl(flow)` scores them by
# $-\text{mean} \log q(b \mid a)$.

# %%
target = tinyflow.UniformConditionalGaussian()


def b_given_a(rng, n):
    """n pairs of chapter 5's target as (x, context) = (b, a), each of shape (n, 1)."""
    ab = target.sample(rng, n)
    return ab[:, 1:], ab[:, :1]


flow_1 = tinyflow.Flow(tinyflow.StandardNormal(1), [tinyflow.AffineAutoregressive(HIDDEN_1, context_dim=1)])
params_1 = flow_1.init(train_rng_1)
print(f"q(b | a): one AffineAutoregressive layer, context_dim = {flow_1.context_dim}, "
      f"{tinyflow.flatten_params(params_1)[0].size} parameters")
params_1, history_1 = tinyflow.fit(tinyflow.forward_kl(flow_1), params_1, b_given_a, train_rng_1, NUM_STEPS_1,
                                   BATCH_SIZE_1, LEARNING_RATE_1, schedule=SCHEDULE, warmup=WARMUP,
                                   clip_norm=CLIP_NORM)
print(f"trained {NUM_STEPS_1} steps in {history_1['seconds']:.1f} s; last batch loss "
      f"{history_1['loss'][-1]:.4f} (the floor: E_a H(b | a) = {target.entropy:.5f}, since H(a) = 0)")

# %% [markdown]
# **The exact KL for each $a$.** For a fixed $a$ both densities are known in closed form, so
# $\mathrm{KL}(p(\cdot \mid a)\,\|\,q(\cdot \mid a)) = \int p(b \mid a) \log \frac{p(b \mid a)}{q(b \mid a)}\, db$
# is a 1D integral: the trapezoid rule on 2,001 nodes over $a \pm 12\sqrt a$ (a node every 0.012
# standard deviations; both tails are Gaussian, so the rest is negligible). No sampling, so no
# Monte Carlo error. A context row of shape `(1,)` is repeated for every point.

# %%
a_nodes = np.linspace(1, 2, 101)            # the grid of contexts


def conditional_kl(params, a):
    """KL(p(. | a) || q(. | a)) and the integral of q(. | a), by the trapezoid rule in b."""
    b = a + np.sqrt(a) * np.linspace(-12, 12, 2001)
    log_p = normal_log_prob(b, a, a)
    log_q = flow_1.log_prob(params, b[:, None], context=np.array([a]))
    return trapezoid(np.exp(log_p) * (log_p - log_q), b), trapezoid(np.exp(log_q), b)


kl_a, mass_q = np.array([conditional_kl(params_1, a) for a in a_nodes]).T
print(f"integral of q(b | a) over b: within {np.max(np.abs(mass_q - 1)):.1e} of 1 at all {len(a_nodes)} values of a")
print(f"KL(p(.|a) || q(.|a)) on a = 1, 1.01, ..., 2: smallest {kl_a.min():.2e} (a = {a_nodes[kl_a.argmin()]:.2f}), "
      f"largest {kl_a.max():.2e} (a = {a_nodes[kl_a.argmax()]:.2f})")
claim.bound("largest KL(p(.|a) || q(.|a)) over a in [1, 2]", kl_a.max(), at_most=0.0021, fmt=".4f")
claim.frequency("the largest KL(p(.|a) || q(.|a)) sits at an end of the range, a < 1.1 or a > 1.9",
                abs(a_nodes[kl_a.argmax()] - 1.5) > 0.4, 20, 20)

# The mean and scale the network learned: q(b | a) = N(mu(a), sigma(a)^2), read off as f(0) and f(1) - f(0).
zero_one = np.array([[0.0], [1.0]])
mu_sigma = np.array([flow_1.forward(params_1, zero_one, context=np.array([a]))[0][:, 0] for a in a_nodes])
mu_a, sigma_a = mu_sigma[:, 0], mu_sigma[:, 1] - mu_sigma[:, 0]
print(f"learned mean and scale: max |mu(a) - a| = {np.max(np.abs(mu_a - a_nodes)):.4f}, "
      f"max |sigma(a) / sqrt(a) - 1| = {np.max(np.abs(sigma_a / np.sqrt(a_nodes) - 1)):.4f}")

# %% [markdown]
# **Back to the joint.** With the exact $p(a)$, the model of the joint is $p(a)\,q(b \mid a)$, and
# its KL to $p(a, b)$ splits by the chain rule, the $p(a)$ terms cancelling:
#
# $$\mathrm{KL}\big(p(a, b)\,\|\,p(a)\,q(b \mid a)\big) = \int_1^2 p(a)\,\mathrm{KL}\big(p(\cdot \mid a)\,\|\,q(\cdot \mid a)\big)\, da.$$
#
# We integrate the curve above over $a$ (trapezoid, 101 nodes), and check it the way chapter 5
# measured its KL: the paired Monte Carlo mean of $\log p(a, b) - \log p(a) q(b \mid a)$ on
# held-out pairs.

# %%
joint_kl = trapezoid(kl_a, a_nodes)         # p(a) = 1 on [1, 2]
b_eval, a_eval = b_given_a(np.random.default_rng([SEED, 1]), NUM_EVAL)
gap = target.log_prob(np.hstack([a_eval, b_eval])) - flow_1.log_prob(params_1, b_eval, context=a_eval)
print(f"joint KL of p(a) q(b | a): quadrature {joint_kl:.6f}; paired Monte Carlo on {NUM_EVAL} held-out "
      f"pairs {gap.mean():.6f} +- {gap.std(ddof=1) / np.sqrt(NUM_EVAL):.6f}")
claim.bound("joint KL of p(a) q(b | a), by quadrature", joint_kl, at_most=0.00032, fmt=".5f")
print(f"chapter 5's 16-block flow of the joint: paired KL at most {CH05_KL}; this run's joint KL is "
      f"{joint_kl / CH05_KL:.1%} of that bound")

# %% [markdown]
# **Reading the numbers.** The joint KL of $p(a)\,q(b \mid a)$ is at most 0.00032 nats, against
# chapter 5's at most 0.024 for its 16-block flow of the joint: some seventy times smaller, from
# a network of 1,218 parameters against chapter 5's 70,784, in 1,000 steps. Two reasons, both worth
# remembering: the hard edges of $p(a)$, where chapter 5 lost most of its KL, are now exact, and
# the conditional family contains the answer. The largest KL for a single $a$ is at most 0.0021,
# and on 20 of 20 runs it sat at an end of the range, where the network has data on one side
# only; the figure shows the learned mean missing most there.

# %%
fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), constrained_layout=True)
b_plot = np.linspace(-3, 7, 400)
for k, a in enumerate([1.0, 1.25, 1.5, 1.75, 2.0]):
    q = np.exp(flow_1.log_prob(params_1, b_plot[:, None], context=np.array([a])))
    axes[0].plot(b_plot, np.exp(normal_log_prob(b_plot, a, a)), color=f"C{k}", label=f"a = {a:g}")
    axes[0].plot(b_plot, q, "--", color=f"C{k}", lw=1.5)
axes[0].set_xlabel("b"), axes[0].set_ylabel("density")
axes[0].set_title("p(b | a) solid, q(b | a) dashed"), axes[0].legend(fontsize=8)
axes[1].semilogy(a_nodes, kl_a)
axes[1].set_xlabel("a"), axes[1].set_ylabel("nats")
axes[1].set_title(f"KL(p(.|a) || q(.|a)); mean over a = {joint_kl:.1e}")
axes[2].plot(a_nodes, mu_a - a_nodes, label="mu(a) - a")
axes[2].plot(a_nodes, sigma_a - np.sqrt(a_nodes), label="sigma(a) - sqrt(a)")
axes[2].axhline(0, color="k", lw=0.5), axes[2].set_xlabel("a")
axes[2].set_title("learned mean and scale minus the exact ones"), axes[2].legend(fontsize=8)
A, B, points = grid((0.5, 2.5), (-3.0, 7.0), 141)
inside = (points[:, 0] >= 1) & (points[:, 0] <= 2)
q_joint = np.zeros(len(points))             # p(a) q(b | a): zero outside [1, 2], exactly
q_joint[inside] = np.exp(flow_1.log_prob(params_1, points[inside, 1:], context=points[inside, :1]))
image = axes[3].pcolormesh(A, B, q_joint.reshape(A.shape), shading="auto", cmap="viridis")
fig.colorbar(image, ax=axes[3], label="p(a) q(b | a)")
axes[3].set_xlabel("a"), axes[3].set_ylabel("b"), axes[3].set_title("the joint model: edges exact")
savefig(fig, "ch11_conditional_1d.png", args.figures_dir)

# %%
cpu_marks.append(time.process_time())

# %% [markdown]
# ## 2. Amortised inference with an exact answer: sbibm's `gaussian_linear`
#
# The benchmark (Lueckmann et al. 2021, "Benchmarking simulation-based inference") has a task
# whose posterior is known in closed form: in $D = 10$ dimensions,
#
# $$\theta \sim N(0, 0.1\, I), \qquad x \mid \theta \sim N(\theta, 0.1\, I)$$
#
# (0.1 is a variance). Conjugacy gives the posterior coordinate by coordinate: precisions add,
# $1/0.1 + 1/0.1 = 20$, so the variance is $0.05$, and the mean is the precision-weighted average
# of the prior mean 0 and the observation, $x/2$:
#
# $$p(\theta \mid x) = N(x/2,\; 0.05\, I).$$
#
# **The model.** One conditional MAF layer, `Invert(AffineAutoregressive(hidden=(128,),
# context_dim=D))`: for a MAF the density direction is a single MADE pass, which is the direction
# training uses. It computes $\theta_i = \mu_i(\theta_{<i}, x) + e^{s_i(\theta_{<i}, x)} z_i$, so
# the exact answer ($\mu_i = x_i / 2$, $s_i = \tfrac12 \log 0.05$) is again in the family; what a
# finite simulation budget makes hard is to *find* it, among functions of 20 inputs.
#
# **Budgets and early stopping.** Each budget of $n$ simulated pairs is split 80 / 20 into
# training and validation pairs. Every run takes the same 2,000 steps (batches of 256, step size
# warmed up to 1e-2 and decayed along a cosine); every 50 steps `fit` scores the validation
# pairs and returns the parameters of the best checkpoint (`restore_best`). That is early
# stopping in its checkpoint form: a small budget overfits, its validation loss turns up after a
# few hundred steps, and the run keeps the parameters from before. We do not also stop the run
# early (`patience`): a noisy stretch of validation losses at the peak step size can end a run
# that had most of its progress still ahead (the notes at the end say what we saw). The
# checkpoint choice alone costs nothing and is stable.
#
# **The score.** For each of 100 held-out observations $x_o$, drawn from the prior predictive
# (prior, then simulator) with a generator the training never sees, the exact
# $\mathrm{KL}(p(\cdot \mid x_o)\,\|\,q(\cdot \mid x_o)) = \mathbb{E}_{\theta \sim p(\cdot \mid x_o)}[\log p(\theta \mid x_o) - \log q(\theta \mid x_o)]$
# by Monte Carlo with 1,000 exact posterior draws, both log-densities at the same draws
# (paired). We report the mean over observations, $\pm$ its standard error from the spread of
# the 100 per-observation values (which includes their Monte Carlo noise).

# %%
def simulate_linear(rng, n, dim):
    """n pairs (theta, x) of gaussian_linear: theta ~ N(0, 0.1 I), x = theta + N(0, 0.1 I)."""
    theta = np.sqrt(PRIOR_VAR) * rng.standard_normal((n, dim))
    return theta, theta + np.sqrt(NOISE_VAR) * rng.standard_normal((n, dim))


def log_posterior_linear(theta, x):
    """log N(theta; x / 2, 0.05 I), summed over coordinates: (N, D), (N, D) -> (N,)."""
    return np.sum(normal_log_prob(theta, x / 2, POST_VAR), axis=1)


def linear_flow(dim):
    return tinyflow.Flow(tinyflow.StandardNormal(dim),
                         [tinyflow.Invert(tinyflow.AffineAutoregressive(HIDDEN_2, context_dim=dim))])


def train_linear(dim, budget):
    """Train q(theta | x) on `budget` simulated pairs, 20% of them for validation: (flow, params, history)."""
    rng = np.random.default_rng([SEED, 2, dim, budget])
    theta, x = simulate_linear(rng, budget, dim)
    split = int(VALIDATION_SHARE * budget)
    flow = linear_flow(dim)
    params, history = tinyflow.fit(tinyflow.forward_kl(flow), flow.init(rng), (theta[split:], x[split:]), rng,
                                   NUM_STEPS_2, BATCH_SIZE_2, LEARNING_RATE_2, schedule=SCHEDULE, warmup=WARMUP,
                                   clip_norm=CLIP_NORM, validation=(theta[:split], x[:split]),
                                   eval_every=EVAL_EVERY)
    return flow, params, history


def held_out_kl(flow, params, dim):
    """KL(posterior || q) at NUM_OBS observations from the prior predictive, NUM_POST exact
    posterior draws each: (per-observation KL (NUM_OBS,), its Monte Carlo SE (NUM_OBS,))."""
    rng = np.random.default_rng([SEED, 3, dim])
    _, x_obs = simulate_linear(rng, NUM_OBS, dim)
    theta = x_obs[:, None, :] / 2 + np.sqrt(POST_VAR) * rng.standard_normal((NUM_OBS, NUM_POST, dim))
    theta, context = theta.reshape(-1, dim), np.repeat(x_obs, NUM_POST, axis=0)
    gap = (log_posterior_linear(theta, context) - flow.log_prob(params, theta, context=context)).reshape(NUM_OBS, -1)
    return gap.mean(axis=1), gap.std(axis=1, ddof=1) / np.sqrt(NUM_POST)


results_2 = {}                               # (dim, budget) -> (flow, params, history, per-observation KL)
for dim in (10, 2):
    for budget in BUDGETS:
        started = time.process_time()
        flow, params, history = train_linear(dim, budget)
        kl_obs, kl_se = held_out_kl(flow, params, dim)
        results_2[dim, budget] = flow, params, history, kl_obs
        print(f"D = {dim:2d}, {budget:6d} simulations: best validation loss at step {history['best_step']:4d} "
              f"of {NUM_STEPS_2}; KL(posterior || q) over {NUM_OBS} held-out observations: mean "
              f"{kl_obs.mean():.4f} +- {kl_obs.std(ddof=1) / np.sqrt(NUM_OBS):.4f}, largest {kl_obs.max():.4f} "
              f"(Monte Carlo SE per observation ~{np.median(kl_se):.4f}); {time.process_time() - started:.1f} s CPU")

# %% [markdown]
# **The KL per budget** (the benchmark's dimension first):

# %%
BOUNDS_2 = {1_000: 0.46, 10_000: 0.055, 100_000: 0.012}      # D = 10: mean KL(posterior || q) at most
for budget, bound in BOUNDS_2.items():
    claim.bound(f"D = 10, {budget} simulations: mean KL(posterior || q)", results_2[10, budget][3].mean(),
                at_most=bound)
for dim in (10, 2):
    means = [results_2[dim, budget][3].mean() for budget in BUDGETS]
    print(f"D = {dim}: the KL falls as the budget grows: {all(np.diff(means) < 0)} "
          f"(x{means[0] / means[1]:.1f} from 1k to 10k, x{means[1] / means[2]:.1f} from 10k to 100k)")
kl_10 = [results_2[10, budget][3].mean() for budget in BUDGETS]
claim.frequency("D = 10: each tenfold budget divides the KL by at least 3",
                bool(kl_10[0] >= 3 * kl_10[1] and kl_10[1] >= 3 * kl_10[2]), 20, 20)
kl_2 = [results_2[2, budget][3].mean() for budget in BUDGETS]
claim.frequency("D = 2: the KL falls with each tenfold budget too", bool(np.all(np.diff(kl_2) < 0)), 19, 20)
claim.frequency(f"D = 10, 1000 simulations: the best checkpoint comes in the first 500 of {NUM_STEPS_2} steps",
                results_2[10, 1_000][2]["best_step"] <= 500, 20, 20)

# %% [markdown]
# **Reading the numbers.** At $D = 10$ the mean KL is at most 0.46 nats with 1k simulations,
# 0.055 with 10k and 0.012 with 100k, and each tenfold budget divided it by at least 3 on 20 of
# 20 runs (from 1k to 10k usually by far more; this run's ratios are printed above). With 1k
# simulations the best checkpoint comes within the first 500 of the 2,000 steps; after that the
# run fits its 800 training pairs better and the rest of the world worse, and the checkpoint
# choice throws that away. The 1k bound is also the loosest: each seed simulates another 1,000
# pairs, and with so few the data set itself differs from seed to seed.
#
# At $D = 2$ everything is easier (the KLs are printed above), and the KL falls with each tenfold
# budget on 19 of 20 runs. On the twentieth, the 10k run kept an early checkpoint: there the true
# KL keeps falling to the last step, but 2,000 validation pairs can barely tell apart checkpoints
# whose KL differs by a thousandth of a nat, so an earlier one can win by chance, and at $D = 2$
# that can leave the 10k run behind the 1k run (exercise 3).
#
# The picture shows $q(\theta \mid x_o)$ against the exact posterior at $D = 2$ for three
# observations, the same contour levels for both: the density at 1 and 2 posterior standard
# deviations from the mean.

# %%
x_show = np.array([[-1.2, 1.0], [1.2, -0.2], [0.0, -1.2]])   # three corners of the prior predictive
levels = np.exp(-0.5 * np.array([2.0, 1.0]) ** 2) / (2 * np.pi * POST_VAR)   # increasing, as contour wants
fig, axes = plt.subplots(1, 4, figsize=(17, 4.1), constrained_layout=True,
                         gridspec_kw={"width_ratios": [1, 1, 1, 1.15]})
for ax, budget in zip(axes, BUDGETS):
    flow, params = results_2[2, budget][:2]
    for k, x_o in enumerate(x_show):
        T1, T2, theta = grid((x_o[0] / 2 - 0.9, x_o[0] / 2 + 0.9), (x_o[1] / 2 - 0.9, x_o[1] / 2 + 0.9), 90)
        post = np.exp(log_posterior_linear(theta, np.broadcast_to(x_o, theta.shape))).reshape(T1.shape)
        q = np.exp(flow.log_prob(params, theta, context=x_o)).reshape(T1.shape)
        ax.contour(T1, T2, post, levels=levels, colors="k", linewidths=0.8)
        ax.contour(T1, T2, q, levels=levels, colors=f"C{k}", linewidths=1.2, linestyles="--")
        ax.plot(*(x_o / 2), "+", color=f"C{k}")
    ax.set_xlim(-1.2, 1.2), ax.set_ylim(-1.2, 1.2), ax.set_aspect("equal")
    ax.set_xlabel("theta_1"), ax.set_ylabel("theta_2")
    ax.set_title(f"{budget} simulations: KL {results_2[2, budget][3].mean():.4f}")
axes[0].legend([Line2D([], [], color="k"), Line2D([], [], color="C0", ls="--")],
               ["exact posterior", "q(theta | x_o)"], fontsize=8, loc="lower left")
for dim, marker in [(10, "o-"), (2, "s-")]:
    kl = [results_2[dim, budget][3] for budget in BUDGETS]
    axes[3].errorbar(BUDGETS, [k.mean() for k in kl], yerr=[2 * k.std(ddof=1) / np.sqrt(len(k)) for k in kl],
                     fmt=marker, capsize=3, label=f"D = {dim}")
axes[3].set_xscale("log"), axes[3].set_yscale("log")
axes[3].set_xlabel("simulations (20% of them for validation)"), axes[3].set_ylabel("nats")
axes[3].set_title("mean KL(posterior || q), +- 2 SE"), axes[3].legend()
savefig(fig, "ch11_gaussian_linear.png", args.figures_dir)

# %%
cpu_marks.append(time.process_time())

# %% [markdown]
# ## 3. A bimodal posterior: sbibm's `two_moons`
#
# **The simulator.** $\theta \sim U[-1, 1]^2$; then an angle $\alpha \sim U(-\pi/2, \pi/2)$ and a
# radius $r \sim N(0.1, 0.01^2)$ draw a point on a thin half-ring, $p = (r\cos\alpha + 0.25,\; r\sin\alpha)$,
# and the observation is that point shifted by a function of $\theta$:
#
# $$x = p + m(\theta), \qquad m(\theta) = \Big(-\frac{|\theta_1 + \theta_2|}{\sqrt 2},\; \frac{-\theta_1 + \theta_2}{\sqrt 2}\Big).$$
#
# **The likelihood in closed form.** Write $u = x - m(\theta) - (0.25, 0) = (r\cos\alpha, r\sin\alpha)$.
# The pair $(r, \alpha)$ has density $N(r; 0.1, 0.01^2) \cdot \frac{1}{\pi}$, and going from polar
# to Cartesian coordinates, $du_1\,du_2 = r\,dr\,d\alpha$, divides it by the Jacobian $r = |u|$:
#
# $$p(x \mid \theta) = p_u(u) = \frac{N(|u|;\, 0.1,\, 0.01^2)}{\pi\,|u|}\;\mathbb{1}[u_1 > 0].$$
#
# ($u_1 > 0$ because $\cos\alpha > 0$ on $(-\pi/2, \pi/2)$. A negative radius, 10 standard
# deviations below the mean, would land on the other side; its probability, $\approx 10^{-23}$,
# is left out.)
#
# **The posterior.** The prior is flat, so $p(\theta \mid x) = \mathbb{1}[\theta \in [-1, 1]^2]\, p_u(x - m(\theta) - (0.25, 0)) / Z(x)$
# with $Z(x) = \int_{[-1, 1]^2} p_u(\dots)\, d\theta$ and the evidence $p(x) = Z(x) / 4$. $m$
# depends on $\theta_1 + \theta_2$ only through its absolute value, so the reflection
# $(\theta_1, \theta_2) \mapsto (-\theta_2, -\theta_1)$ leaves the likelihood unchanged: the
# posterior has two mirror-image modes, one on each side of the line $\theta_1 + \theta_2 = 0$,
# each holding exactly half the mass (the prior box is symmetric under the same reflection). On
# each side $m$ is linear with $|\det| = 1$ (a rotation and a reflection), so each mode is a copy
# of the half-ring: a crescent of radius 0.1 and thickness 0.01 in a box of side 2.
#
# **Checking the likelihood.** We simulate at one $\theta$, cut a window around the half-ring into
# $50 \times 50$ boxes, and compare the simulations that fall in each box with the closed form
# integrated over it (a $10 \times 10$ midpoint rule per box), scaled to the simulations inside
# the window. `tinyflow.box_check` does this: Pearson's $\chi^2 = \sum (n_i - e_i)^2 / e_i$ over
# the boxes expecting at least 5 counts. If the formula is right, the counts differ from the
# $e_i$ by sampling noise only, $\chi^2$ follows a $\chi^2$ distribution on one degree of freedom
# fewer than the boxes used, and its Wilson–Hilferty score
# $z = \big((\chi^2/\text{dof})^{1/3} - (1 - \tfrac{2}{9\,\text{dof}})\big) / \sqrt{2/(9\,\text{dof})}$
# follows $N(0, 1)$. So its bound is not measured over seeds but taken from that distribution:
# $z \le 3.09$, the 99.9th percentile of $N(0, 1)$, holds on 999 runs in 1,000 when the
# likelihood is right, on any machine; a wrong Jacobian (try dropping the $1/|u|$) fails it by
# orders of magnitude.

# %%
RING_CENTRE, RING_RADIUS, RING_SD = np.array([0.25, 0.0]), 0.1, 0.01


def moon_shift(theta):
    """m(theta) = (-|theta_1 + theta_2| / sqrt 2, (-theta_1 + theta_2) / sqrt 2): (..., 2) -> (..., 2)."""
    t1, t2 = theta[..., 0], theta[..., 1]
    return np.stack([-np.abs(t1 + t2), t2 - t1], axis=-1) / np.sqrt(2)


def simulate_moons(rng, n):
    """n pairs (theta, x) of two_moons, each (n, 2)."""
    theta = rng.uniform(-1, 1, (n, 2))
    return theta, observe_moons(rng, theta)


def observe_moons(rng, theta):
    """The simulator: one x per row of theta (n, 2) -> (n, 2)."""
    alpha = rng.uniform(-np.pi / 2, np.pi / 2, len(theta))
    r = RING_RADIUS + RING_SD * rng.standard_normal(len(theta))
    return RING_CENTRE + np.stack([r * np.cos(alpha), r * np.sin(alpha)], axis=1) + moon_shift(theta)


def log_likelihood_moons(x, theta):
    """log p(x | theta) = log N(|u|; 0.1, 0.01^2) - log pi - log |u| where u_1 > 0, -inf elsewhere,
    u = x - m(theta) - (0.25, 0); x and theta broadcast against each other, (..., 2) -> (...)."""
    u = x - moon_shift(theta) - RING_CENTRE
    r = np.sqrt(np.sum(u ** 2, axis=-1))
    r_safe = np.where(u[..., 0] > 0, r, RING_RADIUS)     # keep log(r) finite where the density is 0
    log_p = normal_log_prob(r_safe, RING_RADIUS, RING_SD ** 2) - np.log(np.pi) - np.log(r_safe)
    return np.where(u[..., 0] > 0, log_p, -np.inf)


check_rng = np.random.default_rng([SEED, 4])
theta_check = np.array([0.3, -0.6])
x_sim = observe_moons(check_rng, np.tile(theta_check, (NUM_SIM_CHECK, 1)))
BINS, SUB = 50, 10                                       # 50 x 50 boxes, a 10 x 10 midpoint rule in each
centre = RING_CENTRE + moon_shift(theta_check)           # the half-ring's centre; a square window around it
window = [(centre[0] - 0.104, centre[0] + 0.156), (centre[1] - 0.13, centre[1] + 0.13)]   # x_1 = centre: a box edge
Z_999 = 3.09                                             # the 99.9th percentile of N(0, 1)
check = tinyflow.box_check(lambda x: log_likelihood_moons(x, theta_check), x_sim, window, BINS, sub=SUB)
print(f"likelihood at theta = {theta_check.tolist()}, box check of {NUM_SIM_CHECK} simulations over the "
      f"histogram's window: " + tinyflow.format_box_check(check))
claim.bound("two moons likelihood against simulations: Wilson-Hilferty z of chi^2", check["z"], at_most=Z_999,
            fmt=".2f")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
extent = [*window[0], *window[1]]
vmax = max(check["counts"].max(), check["expected"].max())
for ax, values, title in [(axes[0], check["counts"], f"{NUM_SIM_CHECK} simulations, counts per box"),
                          (axes[1], check["expected"], "closed-form likelihood, expected counts")]:
    image = ax.imshow(values.T, origin="lower", extent=extent, aspect="equal", cmap="viridis", vmin=0, vmax=vmax)
    ax.set_xlabel("x_1"), ax.set_ylabel("x_2"), ax.set_title(title)
fig.colorbar(image, ax=axes, shrink=0.9)
fig.suptitle(f"two moons: p(x | theta = ({theta_check[0]:g}, {theta_check[1]:g})), chi^2/dof = "
             f"{check['chi2'] / check['dof']:.2f}, z = {check['z']:.2f}")
savefig(fig, "ch11_two_moons_likelihood.png", args.figures_dir)

# %% [markdown]
# **The posterior by quadrature.** The crescents are 0.01 thick in a box of side 2, so a uniform
# grid fine enough to resolve them would hold millions of points, almost all where the posterior
# is 0. Instead we evaluate the log-likelihood at the centres of $200 \times 200$ cells of side
# 0.01, keep every cell within one cell of a centre whose log-density is within 50 nats of the
# largest (the crescent and all its visible tails), and fill each kept cell with $5 \times 5$
# midpoints, a spacing of 0.002, a fifth of the crescent's thickness. $Z(x)$ is the midpoint sum.
# The rule is only first-order accurate at the crescents' square-cut ends (where $u_1 = 0$), so
# we check it by halving the spacing, and against an exact value: when both crescents lie inside
# the prior box, each side of the mirror line holds one whole copy of the half-ring's unit mass,
# so $Z(x) = 2$.

# %%
def posterior_points(x, coarse=COARSE, fine=FINE):
    """Points theta (M, 2), log p(theta | x) there (M,), the spacing h and log Z(x): the midpoint
    rule at spacing coarse / fine inside the coarse cells that hold the posterior's mass."""
    centres = np.arange(-1 + coarse / 2, 1, coarse)
    T1, T2 = np.meshgrid(centres, centres, indexing="ij")
    log_l = log_likelihood_moons(x, np.stack([T1, T2], axis=-1))
    near = log_l > log_l.max() - 50
    near[1:] |= near[:-1].copy()
    near[:-1] |= near[1:].copy()
    near[:, 1:] |= near[:, :-1].copy()
    near[:, :-1] |= near[:, 1:].copy()
    offsets = ((np.arange(fine) + 0.5) / fine - 0.5) * coarse
    O1, O2 = np.meshgrid(offsets, offsets, indexing="ij")
    theta = np.stack([(T1[near][:, None] + O1.ravel()).ravel(), (T2[near][:, None] + O2.ravel()).ravel()], axis=1)
    h = coarse / fine
    log_l = log_likelihood_moons(x, theta)
    theta, log_l = theta[log_l > -np.inf], log_l[log_l > -np.inf]   # p = 0 adds nothing to Z or to a KL
    log_Z = np.log(np.sum(np.exp(log_l - log_l.max())) * h * h) + log_l.max()
    return theta, log_l - log_Z, h, log_Z


obs_rng = np.random.default_rng(OBS_SEED)
x_obs_moons = np.vstack([[0.0, 0.0], simulate_moons(obs_rng, 3)[1]])   # (0, 0) and three from the prior predictive
posteriors = [posterior_points(x) for x in x_obs_moons]
for x, (theta, log_post, h, log_Z) in zip(x_obs_moons, posteriors):
    finer_log_Z = posterior_points(x, fine=2 * FINE)[3]
    mass = np.exp(log_post) * h * h
    upper = theta[:, 0] + theta[:, 1] > 0
    print(f"x_o = ({x[0]:+.3f}, {x[1]:+.3f}): {len(theta)} points; log Z = {log_Z:.5f} (log 2 = {np.log(2):.5f}; "
          f"halving the spacing changes it by {abs(finer_log_Z - log_Z):.1e}), evidence p(x_o) = Z / 4 = "
          f"{np.exp(log_Z) / 4:.4f}; mass with theta_1 + theta_2 > 0: {mass[upper].sum():.4f}; "
          f"entropy {-np.sum(mass * log_post):.3f}")

# %% [markdown]
# **The flow.** Four `SplineCoupling` layers with `context_dim=2` (16 bins, `bound=4`, ReLU
# conditioners $[\theta_a, x] \to 64 \to 64 \to 47$), then one conditional MAF layer,
# `Invert(AffineAutoregressive(context_dim=2))`, at the data end. A bimodal, curved, thin
# posterior is what splines are for: an affine coupling can only shift and scale one coordinate
# given the other, so splitting mass into two thin arcs takes many of them (chapter 10 measured
# the difference on a ring of eight Gaussians). The bound covers the prior box $[-1, 1]^2$ with room
# to spare, and also nearly all of the base $N(0, I)$: the spline is the identity outside
# $[-4, 4]$, so base mass beyond the bound could never be moved (with a bound of 1.5, 13% of each
# coordinate's).
# The affine layer at the end moves and scales each observation's posterior into place, so the
# splines work at the posterior's scale, not the prior's (exercise 6 removes it).
# The training pairs are drawn fresh from the simulator every step (1,500 steps of 512), so there
# is no budget to overfit here; what limits the fit is training time.
#
# The score is $\mathrm{KL}(p(\cdot \mid x_o)\,\|\,q(\cdot \mid x_o))$ by the same midpoint rule:
# $\sum p\,(\log p - \log q)\,h^2$ over the points above. The observations are the same on every
# seed, so what moves from run to run is the training alone.
#
# **Leakage.** $q(\cdot \mid x)$ is a flow on the whole plane, while the posterior lives in the
# prior's box $B = [-1, 1]^2$; where the posterior touches an edge of the box (two of our four
# observations do), $q$ spills mass over it, as chapter 5's flow spilled mass past $a = 1$ and
# $a = 2$. Mass $q(S)$ on the posterior's support $S$ costs at least $-\log q(S)$ nats of KL
# (Jensen's inequality; chapter 5, exercise 4). The remedy that sbi's neural posterior estimation
# uses is to restrict $q$ to the prior's support and renormalise:
#
# $$q_B(\theta \mid x) = \frac{q(\theta \mid x)\,\mathbb{1}[\theta \in B]}{q(B \mid x)}, \qquad
# \mathrm{KL}(p\,\|\,q_B) = \mathrm{KL}(p\,\|\,q) + \log q(B \mid x) \;\le\; \mathrm{KL}(p\,\|\,q).$$
#
# Sampling $q_B$ is rejection: draw from $q$, keep the draws inside $B$. Its normaliser
# $q(B \mid x)$ is the share kept, estimated from 20,000 draws of $q$ (its standard error is
# printed), so $\log q_B$ carries that small Monte Carlo error.

# %%
train_rng_3 = np.random.default_rng([SEED, 5])
layers_3 = [tinyflow.SplineCoupling(mask, HIDDEN_3, NUM_BINS_3, BOUND_3, activation="relu", context_dim=2)
            for mask in tinyflow.alternating_masks(2, NUM_BLOCKS_3)]
layers_3.append(tinyflow.Invert(tinyflow.AffineAutoregressive(HIDDEN_3, context_dim=2)))
flow_3 = tinyflow.Flow(tinyflow.StandardNormal(2), layers_3)
params_3 = flow_3.init(train_rng_3)
print(f"q(theta | x): {len(layers_3)} layers, {tinyflow.flatten_params(params_3)[0].size} parameters")
started = time.process_time()
params_3, history_3 = tinyflow.fit(tinyflow.forward_kl(flow_3), params_3, simulate_moons, train_rng_3, NUM_STEPS_3,
                                   BATCH_SIZE_3, LEARNING_RATE_3, schedule=SCHEDULE, warmup=WARMUP,
                                   clip_norm=CLIP_NORM)
print(f"trained {NUM_STEPS_3} steps in {time.process_time() - started:.1f} s CPU; mean batch loss of the last "
      f"100 steps {np.nanmean(history_3['loss'][-100:]):.3f}")

def moons_kl(x, theta, log_post, h):
    """KL(posterior || q) by the midpoint rule on the posterior's points, and q's mass there."""
    log_q = flow_3.log_prob(params_3, theta, context=x)
    return np.sum(np.exp(log_post) * h * h * (log_post - log_q)), np.sum(np.exp(log_q) * h * h)


kl_moons, kl_box, q_box, share_moons, samples_moons = [], [], [], [], []
for k, (x, (theta, log_post, h, _)) in enumerate(zip(x_obs_moons, posteriors)):
    kl, q_mass = moons_kl(x, theta, log_post, h)
    samples = flow_3.sample(params_3, np.random.default_rng([SEED, 6, k]), NUM_Q_SAMPLES, context=x)
    in_box = np.all(np.abs(samples) <= 1, axis=1)
    kept = in_box.mean()
    share = np.mean(samples[in_box, 0] + samples[in_box, 1] > 0)
    kl_moons.append(kl), kl_box.append(kl + np.log(kept)), q_box.append(kept)
    share_moons.append(share), samples_moons.append((samples, in_box))
    print(f"x_o = ({x[0]:+.3f}, {x[1]:+.3f}): KL(posterior || q) by quadrature = {kl:.4f}; q's mass where p > 0: "
          f"{q_mass:.4f}, so KL >= -log of it = {-np.log(q_mass):.4f}; q(B | x_o) = {kept:.4f} +- "
          f"{np.sqrt(kept * (1 - kept) / len(samples)):.4f}, KL(posterior || q_B) = {kl + np.log(kept):.4f}; of q_B's "
          f"samples, {share:.3f} have theta_1 + theta_2 > 0 (exact 0.5)")
finer = posterior_points(x_obs_moons[0], fine=2 * FINE)
print(f"x_o = (0, 0): halving the spacing changes the KL by {abs(moons_kl(x_obs_moons[0], *finer[:3])[0] - kl_moons[0]):.1e}")
at = [f"two moons, x_o = ({x[0]:+.3f}, {x[1]:+.3f})" for x in x_obs_moons]
claim.bound("two moons, both crescents inside the box: the larger KL(posterior || q) of the two observations",
            max(kl_moons[:2]), at_most=0.12)
claim.frequency(f"{at[2]}: q puts more than 5% of its mass outside the box", q_box[2] < 0.95, 20, 20)
for k, bound in [(2, 0.31), (3, 0.32)]:
    claim.bound(f"{at[k]}: KL(posterior || q_B)", kl_box[k], at_most=bound)
claim.bound("two moons: largest |share of q_B's samples with theta_1 + theta_2 > 0 - 0.5|",
            np.max(np.abs(np.array(share_moons) - 0.5)), at_most=0.19, fmt=".3f")

# %% [markdown]
# **Reading the numbers.** At the two observations whose crescents lie inside the box, the KL is
# at most 0.12 nats. That is small next to what the flow had to learn: the posterior's entropy
# there is about $-3.65$ nats (printed above), against $\log 4 = 1.39$ for the prior, so the
# observation shrinks the plausible region by a factor of $e^{5} \approx 150$, and the flow
# learned where that region is, for every $x$ at once.
#
# Near the box's edge the unrestricted $q$ does worse and, at $x_o = (-0.227, -0.916)$,
# erratically: it puts more than 5% of its mass outside the box on 20 of 20 runs, and how much
# more changes from seed to seed (this run's $q(B \mid x_o)$ and KL are printed above; the
# notes at the end give the spread), because nothing in the training data says what $q$ should
# do outside the box. Restricted to the box, $q_B$ scores at most 0.31 there and at most 0.32 at
# $(+0.158, +1.201)$. The restriction is what makes the result hold on every seed; what is left
# is the blur inside the box: $q$ must drop from the crescent's peak to zero at the edge, the
# hard-edge problem of chapter 5 again. Among $q_B$'s samples, each side of the mirror line holds
# half, to within 0.19 at the worst of the four observations: $q$ finds both modes, though not
# always in equal measure.

# %%
fig, axes = plt.subplots(len(x_obs_moons), 3, figsize=(11, 3.6 * len(x_obs_moons)), constrained_layout=True)
for k, (x, (theta, log_post, h, _)) in enumerate(zip(x_obs_moons, posteriors)):
    lo, hi = theta.min(axis=0) - 0.05, theta.max(axis=0) + 0.05       # a window around both crescents
    side = max(hi - lo)
    window = [(c - side / 2, c + side / 2) for c in (lo + hi) / 2]
    T1, T2, points = grid(*window, 60 if args.quick else 220)
    exact = np.exp(log_likelihood_moons(x, points) - posteriors[k][3]).reshape(T1.shape)
    q = np.exp(flow_3.log_prob(params_3, points, context=x)).reshape(T1.shape)
    extent = [*window[0], *window[1]]
    for ax, density in [(axes[k, 0], exact), (axes[k, 1], q)]:
        ax.imshow(density, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=exact.max())
    samples, in_box = (part[:4000] for part in samples_moons[k])
    axes[k, 2].scatter(*samples[in_box].T, s=1, alpha=0.3, label="kept: samples of q_B")
    axes[k, 2].scatter(*samples[~in_box].T, s=1, alpha=0.3, color="C3", label="outside the box: rejected")
    axes[k, 0].set_title(f"exact posterior, x_o = ({x[0]:+.2f}, {x[1]:+.2f})", fontsize=9)
    axes[k, 1].set_title(f"q(theta | x_o): KL {kl_moons[k]:.3f}; restricted to B: {kl_box[k]:.3f}", fontsize=9)
    axes[k, 2].set_title(f"4,000 samples of q; q(B | x_o) = {q_box[k]:.3f}", fontsize=9)
    for ax in axes[k]:
        colour = "w" if ax is not axes[k, 2] else "gray"
        ax.plot(window[0], [-window[0][0], -window[0][1]], color=colour, lw=0.5, ls=":")   # theta_1 + theta_2 = 0
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color=colour, lw=0.8, ls="--")  # the prior's box
        ax.set_xlim(*window[0]), ax.set_ylim(*window[1]), ax.set_aspect("equal")
        ax.set_xlabel("theta_1"), ax.set_ylabel("theta_2")
axes[-1, 2].legend(fontsize=8, markerscale=5, loc="lower right")
savefig(fig, "ch11_two_moons.png", args.figures_dir)

# %%
cpu_marks.append(time.process_time())
sections = ", ".join(f"section {k + 1} {b - a:.1f} s" for k, (a, b) in enumerate(zip(cpu_marks[:-1], cpu_marks[1:])))
print(f"chapter: {time.perf_counter() - start_wall:.1f} s wall, {cpu_marks[-1] - cpu_marks[0]:.1f} s CPU ({sections})")

# %% [markdown]
# ## Summary
#
# * A conditional flow $q(x \mid c)$ is a flow in $x$ whose conditioners also read $c$: couplings
#   concatenate it to the kept coordinates, a MADE feeds it to every first-layer unit, so the
#   autoregressive order in $x$ is kept and even a 1D $x$ can be conditioned. `context=` takes
#   one row per point or one row for all; `fit` trains on `(x, c)` pairs.
# * Chapter 5's target as $p(a)\,q(b \mid a)$: one affine layer of a 1D context, joint KL at
#   most 0.00032 nats against chapter 5's at most 0.024, because the hard edges of $p(a)$ are
#   exact and the answer is in the family.
# * `gaussian_linear` at $D = 10$: KL(posterior ‖ q) averaged over 100 held-out observations at
#   most 0.46, 0.055 and 0.012 nats for 1k, 10k and 100k simulations, each tenfold budget
#   dividing it by at least 3; early stopping by checkpoint keeps the small budget's overfitting
#   in check.
# * `two_moons`: a closed-form likelihood (polar coordinates, a $1/r$ Jacobian) that passes a
#   $\chi^2$ test against the simulator, a posterior of two crescents by quadrature, and four
#   spline couplings that learn both modes for every $x$: KL at most 0.12 nats where the
#   posterior lies inside the prior's box. Near its edge $q$ leaks over it, by an amount that
#   changes from run to run; restricted to the box and renormalised, as sbi does, it scores at
#   most 0.31 and 0.32.
#
# ## Exercises
#
# 1. Replace the affine layer of section 1 by `SplineAutoregressive(context_dim=1)` with
#    $B = 4$, then $B = 10$. Where does $q(b \mid a)$ go wrong at $B = 4$, and why? How close does
#    $B = 10$ get, with 8 and with 16 bins, compared with the affine layer?
# 2. Train chapter 5's joint as $q(a)\,q(b \mid a)$, with a 1D flow for $a$ too. How much of
#    chapter 5's KL comes back, and where?
# 3. In section 2, use 40% of each budget for validation, or evaluate every 500 steps. Does the
#    spread of the 10k result at $D = 2$ shrink? What does the 100k result lose?
# 4. Give the 1k budget of section 2 weight decay (`fit(..., weight_decay=...)`), or a smaller
#    MADE. Can you beat early stopping alone? Is the best choice the same at 100k?
# 5. Write the exact posterior sampler of two moons: draw $(r, \alpha)$, a side at random, invert
#    $m$, and reject draws outside the prior box. Check the KL of section 3 by Monte Carlo.
# 6. In section 3, remove the final affine layer, or set $B = 1.5$. Measure the KL on the same
#    observations and explain the difference.
#
# ## Notes on the numbers
#
# The bounds were set on seeds 0-19 (worst value plus half the spread, rounded outward) and the
# frequencies from the yes-counts there, before the library's fused coupling and LU primitives
# were merged: on seed 0 sections 1 and 2 print the same numbers on the merged library, section
# 3 does not, so its runs are, in effect, new seeds. The likelihood check's bound is not set from
# seeds: $z \le 3.09$ is the 99.9th percentile of $N(0, 1)$. Checked on seeds 20-29 with the
# merged library, `python chapters/seeds.py ch11 --seeds 20-29 --check`: 100 values, none
# outside, none above 0.83 of its bound; every frequency held on 10 of 10, the 19-of-20 one
# included. With numpy's AVX-512 kernels off (`--seeds 20-21 --cpus both`) sections 1 and 2
# printed the same numbers, section 3's training took another path (the KL inside the box 0.056
# and 0.066 against 0.065 and 0.064): 40 values, none outside.
#
# The ratios of the KLs between budgets spread too widely over seeds 0-19 (7.1-12.9 from 1k to
# 10k, 3.8-6.5 from 10k to 100k) for a bound to stay informative, so the lesson is stated as a
# frequency. Leakage at $x_o = (-0.227, -0.916)$: $q(B \mid x_o)$ was 0.47-0.93 on five seeds with
# the first recipe (3,000 steps of 256) and 0.45-0.64 on four with this one, so it is stated only
# as "more than 5%".
#
# Tuning runs behind the recipes. Early stopping by `patience`: with a patience of 10
# evaluations every 50 steps, one 100k run at $D = 10$ stopped after a noisy stretch at the peak
# step size, with its best checkpoint at step 400 and a KL ten times that of the other seeds
# (0.059 against 0.006); at $D = 2$ even a patience of 20 cut some 100k runs short. The final
# affine layer of section 3, in trial runs (2,000 steps, one seed, five observations), lowered
# the KL from 0.10-0.15 to 0.07-0.10. For time (issue 17), section 2 went from 3,000 steps at a
# peak of 5e-3 to 2,000 at 1e-2 (seeds 0-2: the same KL at 10k and 100k; 2,000 steps at 5e-3
# ended 30-40% higher at 100k), and section 3 from 3,000 steps of 256 to 1,500 of 512, about 0.7
# of the CPU time, for a KL inside the box of 0.053-0.083 instead of 0.039-0.066 (on four seeds
# against five); 2,000 steps of 256, 3,000 of 128 and three spline couplings instead of four
# did no better for their cost.
#
# Re-checked after the speed work of issue 19 (the faster fused coupling): the same maths rounded
# differently, so every run follows another trajectory, as it would on another machine. On fresh
# seeds 40-44 (`python chapters/seeds.py ch11 --seeds 40-44 --check`): 50 values, 0 outside, every
# frequency as stated.

"""Shared test material: every layer the library ships, Hypothesis strategies that draw
parameters as well as inputs, and the quadrature / chi-square helpers of the density tests.

The helpers that move parameters and force both signs are tinyflow.strategies' own (the ones a
student's tests use). Parameters are pushed away from their initial values: a coupling or autoregressive layer starts
as the identity (zero last layer) and an LU layer starts as a permutation, so at init log_det = 0
and a log-det with the wrong sign, or a missing term, would pass unnoticed. We draw a seed, init,
then set theta = theta_0 + scale * N(0, I) with scale in [0.3, 1.5] on the flattened pytree.

Inputs are kept moderate, |x| <= 3: the layers are smooth, but the central-difference error grows
like h^2 |f'''| + eps |f| / h, and Exp overflows for large x; |x| <= 3 keeps every checked error
budget meaningful without hiding anything (the tanh-bounded log-scales reach their bounds anyway).
Every coordinate is kept at least 0.01 away from 0, so a central difference with h = 1e-5 never
straddles the leaky ReLU's kink, and rows 0 and 1 are forced positive and negative, so every
coordinate of a piecewise layer sees both branches.
"""
import numpy as np
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow.strategies import both_signs, perturb_params

HIDDEN = (8,)          # small conditioners: the properties do not depend on width, the runtime does
CONTEXT_DIM = 2


class GivenContext:
    """A conditional layer at one context c, as an unconditional layer: c is drawn by init beside
    the layer's params (so the strategies move it too, a new context every draw) and given to
    every point. Every property below then holds for each fixed context."""

    def __init__(self, layer):
        self.layer = layer

    def __getattr__(self, name):                  # index_a, index_b, ...: the layer's own
        return getattr(self.layer, name)

    def init(self, rng, dim):
        return {"layer": self.layer.init(rng, dim), "context": rng.standard_normal((1, self.layer.context_dim))}

    def context(self, params, n):
        return np.ones((n, 1)) * params["context"]

    def forward(self, params, x):
        return self.layer.forward(params["layer"], x, self.context(params, len(x)))

    def inverse(self, params, y):
        return self.layer.inverse(params["layer"], y, self.context(params, len(y)))

# name -> (factory, dim). Factories build a fresh layer, so no test sees another's cached state.
LAYERS = {
    "Affine": (lambda: tf.Affine(), 3),
    "Exp": (lambda: tf.Exp(), 2),
    "LeakyReLU-fixed": (lambda: tf.LeakyReLU(0.2), 3),
    "LeakyReLU-learnable": (lambda: tf.LeakyReLU(0.2, learnable=True), 3),
    "Coupling-[1,0]": (lambda: tf.AffineCoupling([1, 0], hidden=HIDDEN), 2),
    "Coupling-[0,1]": (lambda: tf.AffineCoupling([0, 1], hidden=HIDDEN), 2),
    "Coupling-keep1-change3": (lambda: tf.AffineCoupling([1, 0, 0, 0], hidden=HIDDEN), 4),
    "Coupling-keep3-change1": (lambda: tf.AffineCoupling([1, 1, 0, 1], hidden=HIDDEN), 4),
    "Coupling-[0,1,0,1,1]": (lambda: tf.AffineCoupling([0, 1, 0, 1, 1], hidden=HIDDEN), 5),
    "IAF-D1": (lambda: tf.AffineAutoregressive(hidden=HIDDEN), 1),
    "IAF-D2": (lambda: tf.AffineAutoregressive(hidden=HIDDEN), 2),
    "IAF-D3": (lambda: tf.AffineAutoregressive(hidden=HIDDEN), 3),
    "IAF-D5": (lambda: tf.AffineAutoregressive(hidden=HIDDEN), 5),
    "MAF-D2": (lambda: tf.Invert(tf.AffineAutoregressive(hidden=HIDDEN)), 2),
    "MAF-D3": (lambda: tf.Invert(tf.AffineAutoregressive(hidden=HIDDEN)), 3),
    "Invert-Coupling": (lambda: tf.Invert(tf.AffineCoupling([1, 0, 1], hidden=HIDDEN)), 3),
    "Reverse": (lambda: tf.Reverse(), 3),
    "Permute": (lambda: tf.Permute([2, 0, 3, 1]), 4),
    "LULinear": (lambda: tf.LULinear(), 3),
    "LULinear-order": (lambda: tf.LULinear(order=[2, 0, 1]), 3),
    # bound 2 < 3: the drawn points (|x| <= 3) land both inside the splines' interval and in their tails
    "Spline": (lambda: tf.RationalQuadraticSpline(num_bins=5, bound=2.0), 3),
    "Spline-one-bin": (lambda: tf.RationalQuadraticSpline(num_bins=1, bound=2.0), 2),
    "SplineCoupling-[1,0]": (lambda: tf.SplineCoupling([1, 0], HIDDEN, num_bins=4, bound=2.0), 2),
    "SplineCoupling-[0,1,0,1,1]": (lambda: tf.SplineCoupling([0, 1, 0, 1, 1], HIDDEN, num_bins=4, bound=2.0), 5),
    "SplineIAF-D1": (lambda: tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0), 1),
    "SplineIAF-D3": (lambda: tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0), 3),
    "SplineMAF-D3": (lambda: tf.Invert(tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0)), 3),
    "Coupling-context-[1,0]": (lambda: GivenContext(tf.AffineCoupling([1, 0], HIDDEN, context_dim=CONTEXT_DIM)), 2),
    "Coupling-context-[0,1,1]": (lambda: GivenContext(tf.AffineCoupling([0, 1, 1], HIDDEN, context_dim=CONTEXT_DIM)), 3),
    "SplineCoupling-context-[0,1,1]": (lambda: GivenContext(
        tf.SplineCoupling([0, 1, 1], HIDDEN, num_bins=4, bound=2.0, context_dim=CONTEXT_DIM)), 3),
    "IAF-context-D1": (lambda: GivenContext(tf.AffineAutoregressive(HIDDEN, context_dim=CONTEXT_DIM)), 1),
    "IAF-context-D3": (lambda: GivenContext(tf.AffineAutoregressive(HIDDEN, context_dim=CONTEXT_DIM)), 3),
    "MAF-context-D3": (lambda: GivenContext(tf.Invert(tf.AffineAutoregressive(HIDDEN, context_dim=CONTEXT_DIM))), 3),
    "SplineIAF-context-D1": (lambda: GivenContext(
        tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=CONTEXT_DIM)), 1),
    "SplineIAF-context-D3": (lambda: GivenContext(
        tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=CONTEXT_DIM)), 3),
    "SplineMAF-context-D2": (lambda: GivenContext(
        tf.Invert(tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=CONTEXT_DIM))), 2),
    "Planar-D1": (lambda: tf.Planar(), 1),
    "Planar-D2": (lambda: tf.Planar(), 2),
    "Planar-D3": (lambda: tf.Planar(), 3),
    "Radial-D1": (lambda: tf.Radial(), 1),
    "Radial-D2": (lambda: tf.Radial(), 2),
    "Radial-D3": (lambda: tf.Radial(), 3),
    "Stack-Planar-D2": (lambda: tf.Stack(tf.Planar(), 3), 2),
    "Stack-Radial-D3": (lambda: tf.Stack(tf.Radial(), 3), 3),
    # the exact log-det (slogdet of I + J_g); the estimators are graded statistically in their own tests
    "InvertibleResidual-D2": (lambda: tf.InvertibleResidual(hidden=HIDDEN), 2),
    "InvertibleResidual-D3-tanh": (lambda: tf.InvertibleResidual(hidden=HIDDEN, lipschitz=0.9, activation="tanh"), 3),
}
LAYER_NAMES = sorted(LAYERS)


def points(dim, max_rows=4):
    """(N, dim) float64 inputs, N in [2, max_rows], |x| <= 3, both signs in every column.
    Hypothesis draws N and a seed for the coordinates rather than each float: element-wise float
    draws cost most of the suite's runtime, and every coordinate is moderate by design anyway."""
    def build(n, seed):
        return both_signs(np.random.default_rng(seed).uniform(-3, 3, (n, dim)))
    return st.builds(build, st.integers(2, max_rows), st.integers(0, 2 ** 32 - 1))


@st.composite
def layer_draw(draw, name):
    """(layer, params, x, y): a layer with drawn, perturbed parameters; x in its input space and
    y in its output space (Exp only reaches y > 0, so its y is exp of a drawn point)."""
    factory, dim = LAYERS[name]
    layer = factory()
    seed = draw(st.integers(0, 2 ** 32 - 1))
    scale = draw(st.floats(0.3, 1.5))
    params = perturb_params(layer, dim, seed, scale)
    x, y = draw(points(dim)), draw(points(dim))
    if name == "Exp":
        y = np.exp(y)
    return layer, params, x, y


# --- quadrature and a sample-vs-density check, shared by the flow, target and base tests ---------

def midpoints(lo, hi, n):
    """Centres and width of n equal cells on [lo, hi]."""
    edges = np.linspace(lo, hi, n + 1)
    return (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]


def integrate_2d(log_density, lo, hi, n):
    """Midpoint rule of exp(log_density) over the box [lo, hi] with n = (n0, n1) (or n x n) cells.
    For a smooth density that has decayed at the box's edge it converges faster than any power
    of the cell width."""
    n0, n1 = (n, n) if np.isscalar(n) else n
    c0, w0 = midpoints(lo[0], hi[0], n0)
    c1, w1 = midpoints(lo[1], hi[1], n1)
    grid = np.stack(np.meshgrid(c0, c1, indexing="ij"), axis=-1).reshape(-1, 2)
    return np.sum(np.exp(log_density(grid))) * w0 * w1


def histogram_chi2(x, pilot, log_density, bins=8):
    """Chi-square of a 2D histogram of the samples x (n, 2) against bin probabilities from
    log_density: bins x bins cells between the 2% and 98% quantiles of an independent pilot
    sample, plus one cell for everything outside. Under the model the statistic is ~ chi^2 with
    bins^2 degrees of freedom. Each bin's probability is a 20 x 20 midpoint rule (error ~1e-8,
    far below the binomial noise of 1e5 samples)."""
    edges = [np.quantile(pilot[:, i], np.linspace(0.02, 0.98, bins + 1)) for i in range(2)]
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=edges)[0]
    probs = np.array([[integrate_2d(log_density, [a0, a1], [b0, b1], 20)
                       for a1, b1 in zip(edges[1][:-1], edges[1][1:])]
                      for a0, b0 in zip(edges[0][:-1], edges[0][1:])])
    observed = np.append(counts.ravel(), len(x) - counts.sum())
    expected = len(x) * np.append(probs.ravel(), 1 - probs.sum())
    return np.sum((observed - expected) ** 2 / expected)


# chi^2(64): mean 64, sd sqrt(128) = 11.3; 64 + 6 sd = 132 is exceeded with probability ~1e-6
CHI2_64_BOUND = 132

"""Flow-level properties: densities integrate to one, samples follow log_prob, the losses'
gradients match finite differences, and the same seed gives the same numbers.

Quadrature uses the midpoint rule on a uniform grid. For a smooth density that decays inside
the box it converges faster than any power of the cell width, so 1e-3 leaves a wide margin
(measured errors below 1e-11; in 1D the grid is split at the leaky ReLU's jump in density). The box is the image of the base's circle of radius R: a flow is a continuous
bijection, so the image of the disk lies inside the bounding box of the image of its boundary,
and the base mass outside the disk is exp(-R^2 / 2) (2D) -- a rigorous bound on what is missed.
"""
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from strategies_core import CHI2_64_BOUND, histogram_chi2, integrate_2d, midpoints

HIDDEN = (8,)


def pushed(flow, seed, scale):
    """flow.init, then every parameter moved by scale * N(0, 1)."""
    rng = np.random.default_rng(seed)
    theta, unflatten = flatten(flow.init(rng))
    return unflatten(theta + scale * rng.standard_normal(theta.shape))


def image_box(flow, params, radius):
    """Bounding box of the image of the noise circle of the given radius: it contains the image
    of the disk (through the base's own reparameterisation, then the layers)."""
    angle = np.linspace(0, 2 * np.pi, 4000)
    eps = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x = flow.forward(params, flow.base.from_noise(params["base"], eps))[0]
    return x.min(axis=0), x.max(axis=0)


# --- densities integrate to one -----------------------------------------------------------------

FLOWS_1D = {
    "Affine+LeakyReLU+Affine": lambda: tf.Flow(tf.StandardNormal(1), [tf.Affine(), tf.LeakyReLU(0.3), tf.Affine()]),
    "learnable LeakyReLU": lambda: tf.Flow(tf.DiagNormal(1), [tf.LeakyReLU(0.5, learnable=True), tf.Affine()]),
    "IAF D=1": lambda: tf.Flow(tf.StandardNormal(1), [tf.AffineAutoregressive(hidden=HIDDEN)]),
}


def kinks(flow, params):
    """Where a 1D flow's density jumps: a leaky ReLU's 0, pushed through the layers after it."""
    points = []
    for k, layer in enumerate(flow.layers):
        if isinstance(layer, tf.LeakyReLU):
            x = np.zeros((1, 1))
            for later, p in zip(flow.layers[k + 1:], params["layers"][k + 1:]):
                x = later.forward(p, x)[0]
            points.append(x[0, 0])
    return points


@pytest.mark.parametrize("name", sorted(FLOWS_1D))
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.3, 1.5))
@settings(max_examples=10)
def test_1d_density_integrates_to_one(name, seed, scale):
    flow = FLOWS_1D[name]()
    params = pushed(flow, seed, scale)
    # these 1D flows are increasing, so the image of noise in [-9, 9] holds all but 2e-19 of the mass
    z = flow.base.from_noise(params["base"], np.array([[-9.0], [9.0]]))
    lo, hi = flow.forward(params, z)[0][:, 0]
    # split at the density's jumps, so each piece is smooth and the midpoint rule converges fast
    edges = [lo, *sorted(kinks(flow, params)), hi]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        x, width = midpoints(a, b, 50_000)
        total += np.sum(np.exp(flow.log_prob(params, x[:, None]))) * width
    assert abs(total - 1) < 1e-3


FLOWS_2D = {
    "coupling+LU": lambda: tf.Flow(tf.StandardNormal(2), [
        tf.AffineCoupling([1, 0], hidden=HIDDEN), tf.LULinear(), tf.AffineCoupling([0, 1], hidden=HIDDEN)]),
    "IAF": lambda: tf.Flow(tf.StandardNormal(2), [
        tf.AffineAutoregressive(hidden=HIDDEN), tf.Reverse(), tf.AffineAutoregressive(hidden=HIDDEN)]),
    "MAF": lambda: tf.Flow(tf.DiagNormal(2), [
        tf.Invert(tf.AffineAutoregressive(hidden=HIDDEN)), tf.Permute([1, 0]),
        tf.Invert(tf.AffineAutoregressive(hidden=HIDDEN))]),
}


# Fixed seeds, parameters pushed by 0.3 from init: grid quadrature needs a density the grid
# resolves, and a flow pushed much further can fold its mass into ridges thinner than any
# affordable cell. The contract tests (test_layers.py) draw far wider parameters.
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(FLOWS_2D))
def test_2d_density_integrates_to_one(name, seed):
    flow = FLOWS_2D[name]()
    params = pushed(flow, seed, 0.3)
    lo, hi = image_box(flow, params, radius=7.0)                            # misses < exp(-24.5)
    assert abs(integrate_2d(lambda x: flow.log_prob(params, x), lo, hi, 500) - 1) < 1e-3


# --- samples follow log_prob --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FLOWS_2D))
def test_samples_follow_log_prob(name):
    """Chi-square of a 2D histogram of 1e5 samples against bin probabilities from log_prob (see
    strategies_core.histogram_chi2). A log-det with the wrong sign, or a sampling path that
    disagrees with log_prob, gives a statistic in the thousands."""
    flow = FLOWS_2D[name]()
    params = pushed(flow, 0, 0.3)
    pilot = flow.sample(params, np.random.default_rng(1), 2000)       # bin edges from other samples
    x = flow.sample(params, np.random.default_rng(2), 100_000)
    chi2 = histogram_chi2(x, pilot, lambda p: flow.log_prob(params, p))
    print(f"{name}: chi^2 = {chi2:.1f} on 64 degrees of freedom")
    assert chi2 < CHI2_64_BOUND


def test_sample_and_log_prob_agrees_with_log_prob():
    flow = FLOWS_2D["MAF"]()
    params = pushed(flow, 3, 0.5)
    x, log_q = flow.sample_and_log_prob(params, np.random.default_rng(0), 50)
    assert np.max(np.abs(log_q - flow.log_prob(params, x))) < 1e-10


def test_trace_ends_where_forward_ends():
    flow = FLOWS_2D["coupling+LU"]()
    params = pushed(flow, 4, 0.5)
    z = np.random.default_rng(0).standard_normal((5, 2))
    steps = flow.trace(params, z)
    assert len(steps) == len(flow.layers) + 1
    assert np.array_equal(steps[-1], flow.forward(params, z)[0])
    back = flow.trace(params, steps[-1], inverse=True)
    assert np.max(np.abs(back[-1] - z)) < 1e-12


# --- gradients of the losses --------------------------------------------------------------------

def gradient_flow():
    """Every trainable kind of parameter in one small flow, on a trainable base."""
    return tf.Flow(tf.DiagNormal(2), [
        tf.Affine(), tf.AffineCoupling([1, 0], hidden=(4,)), tf.LeakyReLU(0.5, learnable=True),
        tf.LULinear(order=[1, 0]), tf.AffineAutoregressive(hidden=(4,)),
        tf.Invert(tf.AffineAutoregressive(hidden=(4,)))])


def finite_difference_check(loss, params, batch, rng, num_coordinates=20, num_directions=3, h=1e-6):
    """(autograd, central-difference) pairs of derivatives of loss: along a random subset of
    coordinates of the flattened parameters, and along random directions (each of which mixes
    every coordinate, so no parameter escapes the check)."""
    theta, unflatten = flatten(params)
    exact = flatten(grad(loss)(params, batch))[0]
    directions = list(np.eye(len(theta))[rng.choice(len(theta), num_coordinates, replace=False)])
    random = rng.standard_normal((num_directions, len(theta)))
    directions += list(random / np.linalg.norm(random, axis=1, keepdims=True))   # unit length
    pairs = []
    for v in directions:
        approx = (loss(unflatten(theta + h * v), batch) - loss(unflatten(theta - h * v), batch)) / (2 * h)
        pairs.append((exact @ v, approx))
    return np.array(pairs), np.max(np.abs(exact))


@pytest.mark.parametrize("which", ["forward_kl", "reverse_kl"])
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.3, 1.0))
@settings(max_examples=8)
def test_loss_gradient_matches_finite_differences(which, seed, scale):
    flow = gradient_flow()
    params = pushed(flow, seed, scale)
    rng = np.random.default_rng(seed)
    if which == "forward_kl":
        loss, batch = tf.forward_kl(flow), tf.Banana().sample(rng, 16) / 4
    else:
        loss, batch = tf.reverse_kl(flow, tf.Banana().log_prob), rng.standard_normal((16, 2))
    pairs, g_max = finite_difference_check(loss, params, batch, rng)
    # Central differences carry a rounding error ~ eps |loss| / h in EVERY coordinate, and far-out
    # samples make |loss| and the largest gradient entries reach 1e9, so the error is measured
    # against the gradient's scale, max(1, max |g|), not entry by entry.
    assert np.max(np.abs(pairs[:, 0] - pairs[:, 1])) / max(1.0, g_max) < 1e-6


# --- reproducibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FLOWS_2D))
def test_same_seed_gives_same_init_and_samples(name):
    def run(seed):
        flow = FLOWS_2D[name]()
        rng = np.random.default_rng(seed)
        theta, unflatten = flatten(flow.init(rng))
        params = unflatten(theta + 0.5 * rng.standard_normal(theta.shape))
        return flatten(params)[0], flow.sample(params, rng, 10), flow.sample_and_log_prob(params, rng, 10)
    first, second = run(11), run(11)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert all(np.array_equal(a, b) for a, b in zip(first[2], second[2]))
    assert not np.array_equal(run(12)[1], first[1])

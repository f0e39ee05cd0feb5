"""Radial: the properties the shared contract (test_layers.py) does not reach: points at the
centre z0, parameters at the invertibility limit beta -> -alpha and beyond the usual range, the
cancellation-free root of the inverse's quadratic, gradients of both directions, and the forward
map's primitive (radial_backprop.py) against the readable radial_plain.

Extreme-parameter round trips use z0 = 0: with z0 != 0 a strongly contracting layer maps z next
to z0, and x = z0 + (tiny) rounds away what no inverse can restore (an error of eps |z0| in x,
times the inverse's expansion). With z0 = 0 the error measures the layer's own arithmetic.
"""
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow import strategies
from tinyflow.radial import radial_plain, softplus
from tinyflow.radial_backprop import radial

EPS = np.finfo(float).eps
seeds = st.integers(0, 2 ** 32 - 1)
_scale = settings.default.max_examples / 25       # as in test_layers.py: HYPOTHESIS_PROFILE=dev runs 12x more
CHEAP, COSTLY = settings(max_examples=round(30 * _scale)), settings(max_examples=round(8 * _scale))


def raw(value):
    """alpha_raw or beta_raw with softplus(raw) = value."""
    return np.array(np.log(np.expm1(value)))


def layer(z0, alpha_raw, beta_raw):
    return {"z0": np.asarray(z0, float), "alpha_raw": np.array(float(alpha_raw)),
            "beta_raw": np.array(float(beta_raw))}


def rays(z0, seed, radii=(0.0, 1e-12, 1e-6, 1e-2, 1.0, 100.0, 1e4)):
    """Points z0 + r v, one random direction v per radius, r = 0 included."""
    v = np.random.default_rng(seed).standard_normal((len(radii), len(z0)))
    return z0 + np.array(radii)[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


@given(dim=st.integers(1, 4), seed=seeds)
@CHEAP
def test_the_centre_stays_put_and_the_log_det_there_is_d_log_of_the_scale(dim, seed):
    params = strategies.perturb_params(tf.Radial(), dim, seed, 1.5)
    z0 = params["z0"][None, :]
    x, log_det = tf.Radial().forward(params, z0)
    z, log_det_inverse = tf.Radial().inverse(params, z0)
    alpha, alpha_plus_beta = softplus(params["alpha_raw"]), softplus(params["beta_raw"])
    assert np.array_equal(x, z0) and np.array_equal(z, z0)
    # at r = 0 both factors are (alpha + beta) / alpha: x - z0 = (z - z0) (alpha + beta) / alpha
    assert abs(log_det[0] - dim * np.log(alpha_plus_beta / alpha)) <= 1e-13 * max(1, abs(log_det[0]))
    assert log_det_inverse[0] == -log_det[0]


@given(dim=st.integers(1, 4), seed=seeds)
@CHEAP
def test_points_move_along_rays_from_the_centre(dim, seed):
    params = strategies.perturb_params(tf.Radial(), dim, seed, 1.5)
    z = np.random.default_rng(seed).uniform(-3, 3, (6, dim))
    d, d_x = z - params["z0"], tf.Radial().forward(params, z)[0] - params["z0"]
    ratio = np.sum(d_x * d, axis=1) / np.sum(d * d, axis=1)      # x - z0 = ratio (z - z0), ratio > 0
    assert np.all(ratio > 0) and np.allclose(d_x, ratio[:, None] * d, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("alpha_raw", [-30.0, -10.0, 0.0, 10.0, 30.0, 1e4])
@pytest.mark.parametrize("beta_raw", [-30.0, -10.0, 0.0, 10.0, 30.0, 1e4])
def test_round_trips_at_extreme_parameters(alpha_raw, beta_raw):
    """From contractions by 1e-17 at z0 (beta = -alpha + 9e-14, alpha = 1e4) to expansions by 1e17; z0 = 0."""
    params = layer(np.zeros(3), alpha_raw, beta_raw)
    z = rays(np.zeros(3), seed=0)
    x, log_det = tf.Radial().forward(params, z)
    z_back, log_det_back = tf.Radial().inverse(params, x)
    x_back = tf.Radial().forward(params, tf.Radial().inverse(params, z)[0])[0]
    # per point, relative to the larger of |z| and |x| (the smaller side only holds that much)
    scale = np.maximum(np.abs(z).max(1), np.abs(x).max(1))
    assert np.all(np.abs(z_back - z).max(1) <= 16 * EPS * scale)                 # measured <= 2 eps
    assert np.all(np.abs(x_back - z).max(1) <= 16 * EPS * np.maximum(np.abs(z).max(1), np.abs(x_back).max(1)))
    # at the point it returns (z_back's error is relatively large where |z| << |x|)
    log_det_there = tf.Radial().forward(params, z_back)[1]
    assert np.all(np.abs(log_det_back + log_det_there) <= 1e-13 * np.maximum(1, np.abs(log_det_there)))


def test_inverse_root_is_cancellation_free():
    """alpha r' << (alpha + beta - r')^2: the textbook root (-B + sqrt(B^2 + 4 alpha r')) / 2
    subtracts nearly equal numbers; the inverse recovers r to rounding."""
    alpha, alpha_plus_beta = 1.0, 2.0
    params = layer([0.0], raw(alpha), raw(alpha_plus_beta))
    r = np.array([1e-12, 1e-9, 1e-6])                             # r' ~ 2 r, B ~ 2, alpha r' ~ 2 r
    r_x = r * (r + alpha_plus_beta) / (alpha + r)
    B = alpha_plus_beta - r_x
    textbook = (-B + np.sqrt(B ** 2 + 4 * alpha * r_x)) / 2
    assert np.max(np.abs(textbook - r) / r) > 1e-6                # the case is real
    z, _ = tf.Radial().inverse(params, r_x[:, None])
    assert np.max(np.abs(z[:, 0] - r) / r) <= 1e-14


@pytest.mark.parametrize("size", [1e10, 1e160, 1e200, 1e300, 1e307])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_layer_is_exact_far_from_the_centre(size, direction):
    """|x - z0| past 1e154: r^2 and r (2 alpha + r) would overflow (the inverse returned NaN at
    1e200, issue 18); both directions stay exact there, with log-dets ~ (alpha + beta - alpha) / r ~ 0."""
    params = layer([0.3, -0.2, 0.1], raw(0.7), raw(2.5))
    points = size * np.array([[1.0, -1 / 3, 0.5], [-0.6, 0.0, 0.8], [1e-3, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # no overflow on the way
        there, log_det = getattr(tf.Radial(), direction)(params, points)
        back, log_det_back = getattr(tf.Radial(), "inverse" if direction == "forward" else "forward")(params, there)
    assert np.all(np.isfinite(there)) and np.all(np.abs(log_det) <= 10 / size)
    assert np.all(np.abs(there - points) <= 1.8 + 4 * EPS * size)                # a move of at most |beta| = 1.8
    assert np.all(np.abs(back - points) <= 4 * EPS * size)
    assert np.all(np.abs(log_det + log_det_back) <= 10 / size)


def test_softplus_does_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert softplus(1e4) == 1e4 and softplus(-1e4) == 0.0
        assert grad(softplus)(1e4) == 1.0 and grad(softplus)(-1e4) == 0.0


@pytest.mark.parametrize("alpha_raw, beta_raw", [(-1e4, 0.0), (0.0, -1e4)])
def test_layer_stays_finite_where_softplus_underflows(alpha_raw, beta_raw):
    """softplus(-1e4) is 0 in float64: TINY keeps alpha and alpha + beta positive, so the centre
    maps to itself with a finite log-det, +-D log((alpha + beta) / alpha) ~ +-D 708."""
    params = layer([0.5, -1.0], alpha_raw, beta_raw)
    z = np.array([[0.5, -1.0], [1.0, 1.0]])
    x, log_det = tf.Radial().forward(params, z)
    z_back, log_det_back = tf.Radial().inverse(params, x)
    assert np.array_equal(x[0], z[0]) and np.all(np.isfinite(log_det)) and abs(log_det[0]) > 1400
    assert np.allclose(z_back, z, rtol=1e-15, atol=0) and np.allclose(log_det_back, -log_det, rtol=1e-14, atol=0)


def test_jacobian_at_the_centre_is_the_scale():
    params = layer([0.5, -1.0, 2.0], 0.3, -0.7)
    scale = softplus(-0.7) / softplus(0.3)                        # (alpha + beta) / alpha
    forward = jacobian(lambda z: tf.Radial().forward(params, z[None])[0][0])(params["z0"])
    inverse = jacobian(lambda x: tf.Radial().inverse(params, x[None])[0][0])(params["z0"])
    assert np.allclose(forward, scale * np.eye(3), rtol=1e-14, atol=0)
    assert np.allclose(inverse, np.eye(3) / scale, rtol=1e-14, atol=0)


def finite_difference_grad(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


def weighted_loss(direction, unflatten, points, seed):
    """theta -> a random weighting of the outputs and log-dets: its gradient is every VJP at once."""
    rng = np.random.default_rng(seed)
    weights, log_det_weights = rng.standard_normal(points.shape), rng.standard_normal(len(points))

    def loss(theta):
        out, log_det = getattr(tf.Radial(), direction)(unflatten(theta), points)
        return anp.sum(out * weights) + anp.sum(log_det * log_det_weights)
    return loss


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("near_limit", [False, True])
@given(seed=seeds)
@COSTLY
def test_gradient_wrt_params_matches_finite_differences(direction, near_limit, seed):
    """near_limit: beta_raw = -5, so beta = -alpha + 0.0067. One point is 0.05 from z0 (at z0
    itself a central difference is only first-order: the next test covers that point)."""
    params = strategies.perturb_params(tf.Radial(), 3, seed, 1.0)
    if near_limit:
        params["beta_raw"] = np.array(-5.0)
    points = np.vstack([params["z0"] + 0.05, np.random.default_rng(seed).uniform(-3, 3, (4, 3))])
    theta, unflatten = flatten(params)
    loss = weighted_loss(direction, unflatten, points, seed)
    expected = finite_difference_grad(loss, theta)
    assert np.max(np.abs(grad(loss)(theta) - expected) / np.maximum(1, np.abs(expected))) <= 1e-6


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@given(seed=seeds)
@COSTLY
def test_gradient_wrt_params_at_the_centre_is_the_mean_of_the_nearby_ones(direction, seed):
    """x is differentiable at z0; the log-det is a cone in r there, and the gradient returned is its
    symmetric subgradient: the mean of the gradients at z0 + eps v and z0 - eps v."""
    params = strategies.perturb_params(tf.Radial(), 3, seed, 1.0)
    params["z0"] = np.round(params["z0"] * 2 ** 20) / 2 ** 20     # so that z0 +- v and their d = +-v are exact
    theta, unflatten = flatten(params)
    v = 2.0 ** -40 * np.random.default_rng(seed).integers(-1000, 1000, 3)       # |v| ~ 1e-9
    at = [grad(weighted_loss(direction, unflatten, params["z0"][None] + shift, seed))(theta)
          for shift in (0, v, -v)]
    assert np.all(np.isfinite(at[0]))
    # the cone's terms (up to ~200 here) cancel exactly; what remains is O(|v|) times the slopes
    assert np.max(np.abs(at[0] - (at[1] + at[2]) / 2)) <= 1e-6 * max(1, np.abs(at[1]).max())


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("alpha_raw, beta_raw", [(-30.0, 30.0), (30.0, -30.0), (0.0, -30.0), (1e4, 1e4), (0, 0)])
def test_gradients_are_finite_at_the_centre_and_extremes(direction, alpha_raw, beta_raw):
    params = layer([0.5, -1.0, 2.0], alpha_raw, beta_raw)
    points = rays(params["z0"], seed=1)

    def total(params, points):
        out, log_det = getattr(tf.Radial(), direction)(params, points)
        return anp.sum(out) + anp.sum(log_det)
    for gradient in flatten(grad(total)(params, points))[0], grad(total, 1)(params, points):
        assert np.all(np.isfinite(gradient))


@given(case=strategies.layer_case(tf.Radial(), dim=2))
@COSTLY
def test_check_layer_passes(case):
    tf.check_layer(tf.Radial(), *case)


# The forward map as one autograd primitive (radial_backprop.radial) against the readable
# autograd.numpy expression it replaces (radial.radial_plain): the same values and the same
# gradients w.r.t. z, z0, alpha_raw and beta_raw, to rounding, at ordinary parameters, at the
# invertibility limit (beta_raw = -30: beta = -alpha + 1e-13) and far beyond the usual range,
# and at every distance from z0, the centre itself included (where both give the norm's
# symmetric subgradient 0). alpha_raw stays >= -5 (alpha >= 0.0067) there: with a tiny alpha the
# readable d log_det / dr is a difference of terms ~ 1/alpha, which loses digits where beta is
# small; the primitive writes it without the difference, and the identity test below checks it.
PRIMITIVE_TOL = 1e-12
raws = st.one_of(st.floats(-3, 3), st.sampled_from([-30.0, -10.0, 10.0, 30.0]))
alpha_raws = st.one_of(st.floats(-3, 3), st.sampled_from([-5.0, 10.0, 30.0]))


def relative(a, b):
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


def primitive_case(seed, alpha_raw, beta_raw, dim):
    z0 = np.random.default_rng(seed).standard_normal(dim)
    return rays(z0, seed), z0, np.array(float(alpha_raw)), np.array(float(beta_raw))


def weighted_outputs(f, seed, shape):
    """args -> sum(gx * x) + sum(gl * log_det) for random cotangents: its gradient is the VJP."""
    rng = np.random.default_rng(seed + 7)
    gx, gl = rng.standard_normal(shape), rng.standard_normal(shape[0])

    def loss(*args):
        x, log_det = f(*args)
        return anp.sum(gx * x) + anp.sum(gl * log_det)
    return loss


@given(seed=seeds, alpha_raw=raws, beta_raw=raws, dim=st.integers(1, 4))
@CHEAP
def test_primitive_computes_the_readable_forward(seed, alpha_raw, beta_raw, dim):
    args = primitive_case(seed, alpha_raw, beta_raw, dim)
    for fast, plain in zip(radial(*args), radial_plain(*args)):
        assert relative(fast, plain) <= PRIMITIVE_TOL


@given(seed=seeds, alpha_raw=alpha_raws, beta_raw=raws, dim=st.integers(1, 4))
@CHEAP
def test_primitive_gradients_match_autograd_of_the_readable_forward(seed, alpha_raw, beta_raw, dim):
    args = primitive_case(seed, alpha_raw, beta_raw, dim)
    fast, plain = (weighted_outputs(f, seed, args[0].shape) for f in (radial, radial_plain))
    for argnum, arg in enumerate(args):
        got, want = grad(fast, argnum)(*args), grad(plain, argnum)(*args)
        assert np.shape(got) == np.shape(arg) and relative(got, want) <= PRIMITIVE_TOL, f"argument {argnum}"


@pytest.mark.parametrize("raw", [-30.0, -10.0, 0.0, 10.0])
def test_primitive_gradient_is_exact_where_the_layer_is_the_identity(raw):
    """alpha_raw = beta_raw: beta = 0, x = z and log_det = 0, so d/dz = gx and d/dz0 = 0 exactly,
    also 1e-12 from z0 with alpha = 9e-14, where the readable expression is off by ~1e-4."""
    args = primitive_case(0, raw, raw, 2)
    loss = weighted_outputs(radial, 0, args[0].shape)
    gx = np.random.default_rng(7).standard_normal(args[0].shape)        # weighted_outputs' cotangent
    assert np.max(np.abs(grad(loss, 0)(*args) - gx)) <= 1e-15 and np.max(np.abs(grad(loss, 1)(*args))) <= 1e-14


@given(seed=seeds, dim=st.integers(1, 3))
@COSTLY
def test_primitive_gradients_match_finite_differences(seed, dim):
    params = strategies.perturb_params(tf.Radial(), dim, seed, 1.0)
    z = np.random.default_rng(seed).uniform(-3, 3, (6, dim))
    args = [z, params["z0"], params["alpha_raw"], params["beta_raw"]]
    loss = weighted_outputs(radial, seed, z.shape)
    for argnum in range(4):
        theta = np.ravel(args[argnum]).astype(float)

        def along(theta):
            return loss(*args[:argnum], theta.reshape(np.shape(args[argnum])), *args[argnum + 1:])
        expected = finite_difference_grad(along, theta)
        assert relative(np.ravel(grad(loss, argnum)(*args)), expected) <= 1e-6, f"argument {argnum}"


def test_forward_records_one_node_per_layer():
    """The primitive, and one read of each of its two outputs: three nodes, where the readable
    expression records 27 (z alone traced; 32 when the parameters are traced too, as in training).
    Counted as chapter 8 counts them; the other 4 are the input, two sums and their addition."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort
    params = tf.Radial().init(np.random.default_rng(0), 2)

    def layer_nodes(forward):
        def total(z):
            x, log_det = forward(z)
            return anp.sum(x) + anp.sum(log_det)
        _, end = trace(VJPNode.new_root(), total, np.random.default_rng(1).standard_normal((4, 2)))
        return sum(1 for _ in toposort(end)) - 4
    assert layer_nodes(lambda z: tf.Radial().forward(params, z)) == 3
    assert layer_nodes(lambda z: radial_plain(z, params["z0"], params["alpha_raw"], params["beta_raw"])) >= 20

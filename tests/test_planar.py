"""Planar: the properties the shared contract (test_layers.py) does not reach: the
reparameterisation, the scalar equation and its solver, accuracy near the invertibility limit
c -> -1 and at extreme parameters, gradients of both directions w.r.t. params and inputs, and
the forward map's primitive (planar_backprop.py) against the readable planar_plain.

"1 + c" below is the distance from the limit: 1 + c = softplus(w^T u), so a layer with a given
1 + c has w^T u = log(expm1(1 + c)); w^T u = -40 puts it at 1 + c = 4e-18.
"""
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow import strategies
from tinyflow.planar import MAX_ITER, TINY, planar_plain, sech2, softplus, solve_alpha
from tinyflow.planar_backprop import planar

EPS = np.finfo(float).eps
LIMITS = [1e-2, 1e-4, 1e-6, 1e-8]
seeds = st.integers(0, 2 ** 32 - 1)
_scale = settings.default.max_examples / 25       # as in test_layers.py: HYPOTHESIS_PROFILE=dev runs 12x more


def examples(n):
    return settings(max_examples=round(n * _scale))


def wu_at(one_plus_c):
    return np.log(np.expm1(one_plus_c))


def layer_at(wu, seed, dim=3, w_norm=(0.1, 3.0), b_max=3.0):
    """Planar params with the given w^T u, a random direction w and offset b."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    w *= rng.uniform(*w_norm) / np.linalg.norm(w)
    u = rng.standard_normal(dim)
    u += (wu - w @ u) * w / (w @ w)
    return {"u": u, "w": w, "b": np.array(rng.uniform(-b_max, b_max))}


def with_points_on_the_hyperplane(params, seed, n=8):
    """n random z in [-5, 5]^D, half moved onto a = w^T z + b = 0, where g' = 1 + c is smallest."""
    w, b = params["w"], params["b"]
    z = np.random.default_rng(seed).uniform(-5, 5, (n, len(w)))
    z[n // 2:] -= ((z[n // 2:] @ w + b) / (w @ w))[:, None] * w
    return z


def inverse_error_bound(params, z, x):
    """Rounding of x, amplified by f^-1 along w: eps (|z| + |x| + |u_hat|)(1 + |u_hat| |w| sech^2(a) / g'(a))."""
    u_hat, one_plus_c = tf.Planar().u_hat(params)
    a = z @ params["w"] + params["b"]
    slope = np.tanh(a) ** 2 + one_plus_c * sech2(a)
    scale = np.abs(z).max(1) + np.abs(x).max(1) + np.abs(u_hat).max()
    return EPS * scale * (1 + np.abs(u_hat).max() * np.linalg.norm(params["w"]) * sech2(a) / slope)


@given(dim=st.integers(1, 4), seed=seeds, scale=st.floats(1e-2, 1e2))
@examples(50)
def test_reparameterisation_gives_c_above_minus_one(dim, seed, scale):
    rng = np.random.default_rng(seed)
    u, w = scale * rng.standard_normal(dim), scale * rng.standard_normal(dim)
    u_hat, one_plus_c = tf.Planar().u_hat({"u": u, "w": w, "b": np.array(0.0)})
    # c = m(w^T u) > -1, also where softplus underflows (w^T u < -745: 1 + c is floored at TINY)
    assert one_plus_c > 0 and abs(one_plus_c - softplus(w @ u)) <= EPS * one_plus_c + TINY
    # and u_hat really has w^T u_hat = c, up to the rounding of the dot products
    assert abs(w @ u_hat - (one_plus_c - 1)) <= 8 * EPS * np.abs(w) @ (np.abs(u) + np.abs(u_hat))


def test_softplus_does_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # an overflow warning fails the test
        assert softplus(1e4) == 1e4 and softplus(-1e4) == 0.0
        assert grad(softplus)(1e4) == 1.0 and grad(softplus)(-1e4) == 0.0
        params = {"u": np.array([1e4, 0.0]), "w": np.array([1.0, 0.0]), "b": np.array(0.0)}
        x, log_det = tf.Planar().forward(params, np.array([[0.5, 1.0]]))
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(log_det))


@given(wu=st.floats(-40, 1e4), b=st.floats(-10, 10))
@examples(50)
def test_scalar_equation_is_monotone(wu, b):
    one_plus_c = softplus(wu)
    alpha = np.linspace(-50, 50, 20001)
    g = alpha + (one_plus_c - 1) * np.tanh(alpha + b)
    slope = np.tanh(alpha + b) ** 2 + one_plus_c * sech2(alpha + b)
    assert np.all(np.diff(g) >= 0) and np.all(slope > 0)


@given(wu=st.floats(-40, 1e4), b=st.floats(-10, 10), seed=seeds)
@examples(100)
def test_solver_converges_to_rounding_inside_the_bracket(wu, b, seed):
    one_plus_c = softplus(wu)
    c = one_plus_c - 1
    wx = np.random.default_rng(seed).uniform(-1, 1, 16) * 10.0 ** np.arange(-3, 5).repeat(2)
    alpha, steps = solve_alpha(wx, one_plus_c, b)
    assert steps < MAX_ITER
    assert np.all(np.abs(alpha - wx) <= abs(c) * (1 + EPS) + EPS * np.abs(wx))      # in the bracket
    t = np.tanh(alpha + b)
    slope = t ** 2 + one_plus_c * sech2(alpha + b)
    noise = EPS * (np.abs(alpha) + np.abs(c * t) + np.abs(wx) + slope * (np.abs(alpha) + abs(b)))   # as the solver's
    assert np.all(np.abs(alpha + c * t - wx) <= noise)


@pytest.mark.parametrize("one_plus_c", LIMITS)
@given(seed=seeds, dim=st.integers(1, 3))
@examples(20)
def test_forward_undoes_inverse_near_the_limit(one_plus_c, seed, dim):
    params = layer_at(wu_at(one_plus_c), seed, dim)
    x = np.random.default_rng(seed + 1).uniform(-5, 5, (8, dim))
    z, _ = tf.Planar().inverse(params, x)
    assert np.max(np.abs(tf.Planar().forward(params, z)[0] - x)) <= 1e-12   # measured <= 1.1e-14


@pytest.mark.parametrize("one_plus_c", LIMITS)
@given(seed=seeds, dim=st.integers(1, 3))
@examples(20)
def test_inverse_undoes_forward_near_the_limit_as_well_as_conditioning_allows(one_plus_c, seed, dim):
    params = layer_at(wu_at(one_plus_c), seed, dim)
    z = with_points_on_the_hyperplane(params, seed)
    x, log_det = tf.Planar().forward(params, z)
    z_back, log_det_back = tf.Planar().inverse(params, x)
    # f^-1 amplifies x's rounding by up to 1 / (1 + c) there; measured error / bound <= 10
    assert np.all(np.abs(z_back - z).max(1) <= 100 * inverse_error_bound(params, z, x))
    assert np.all(np.isfinite(log_det_back)) and np.all(log_det <= 0.0)


@given(seed=seeds, wu=st.floats(-40, 1e4), dim=st.integers(1, 4))
@examples(50)
def test_round_trips_at_extreme_parameters(seed, wu, dim):
    params = layer_at(wu, seed, dim, w_norm=(1e-2, 10.0), b_max=10.0)
    u_hat, _ = tf.Planar().u_hat(params)
    size = np.abs(u_hat).max() * np.linalg.norm(params["w"])      # f's Lipschitz constant, minus 1
    x = np.random.default_rng(seed + 1).uniform(-500, 500, (8, dim))
    z, _ = tf.Planar().inverse(params, x)
    error = np.abs(tf.Planar().forward(params, z)[0] - x).max(1)
    # rounding of z (size |x| + |u_hat|) times f's Lipschitz constant; measured error / bound <= 27
    assert np.all(error <= 100 * EPS * (np.abs(x).max(1) + np.abs(u_hat).max()) * (1 + size))
    z = with_points_on_the_hyperplane(params, seed)
    x, _ = tf.Planar().forward(params, z)
    assert np.all(np.abs(tf.Planar().inverse(params, x)[0] - z).max(1) <= 100 * inverse_error_bound(params, z, x))


@pytest.mark.parametrize("one_plus_c", LIMITS)
def test_log_det_keeps_its_digits_near_the_limit(one_plus_c):
    """At a = 0, log_det = log(1 + c). Forming c first and then log1p(c sech^2) would be off by
    5e-9 at 1 + c = 1e-8 (2.9e-11 at 1e-6): c = -1 + 1e-8 keeps only half its digits of 1 + c."""
    params = layer_at(wu_at(one_plus_c), seed=0)
    z = with_points_on_the_hyperplane(params, 0, n=2)[1:]
    _, log_det = tf.Planar().forward(params, z)
    assert abs(log_det[0] - np.log(one_plus_c)) <= 1e-13 * abs(np.log(one_plus_c))


def test_sech2_keeps_its_digits_where_tanh_saturates():
    a = np.array([-40.0, -20.0, 0.0, 20.0, 40.0])
    assert np.all(np.abs(sech2(a) - 1 / np.cosh(a) ** 2) <= 1e-14 / np.cosh(a) ** 2)
    assert 1 - np.tanh(40.0) ** 2 == 0.0                        # the textbook form has nothing left


def finite_difference_grad(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


def weighted_loss(direction, unflatten, points, seed):
    """theta -> a random weighting of the outputs and log-dets: its gradient is every VJP at once."""
    rng = np.random.default_rng(seed)
    weights, log_det_weights = rng.standard_normal(points.shape), rng.standard_normal(len(points))

    def loss(theta):
        out, log_det = getattr(tf.Planar(), direction)(unflatten(theta), points)
        return anp.sum(out * weights) + anp.sum(log_det * log_det_weights)
    return loss


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("one_plus_c", [None, 1e-2, 1e-4])
@given(seed=seeds)
@examples(10)
def test_gradient_wrt_params_matches_finite_differences(direction, one_plus_c, seed):
    """The inverse's through the implicit-function VJP of the solved alpha. one_plus_c None:
    perturbed parameters as in the contract tests (1 + c = 0.003 happens there too). The points
    keep |a| >= 0.5: beside the hyperplane a = 0 the inverse varies on a scale ~ 1 + c, finer
    than any usable difference step (the next test checks those points without differences)."""
    if one_plus_c is None:
        params = strategies.perturb_params(tf.Planar(), 3, seed, 1.0)
    else:
        params = layer_at(wu_at(one_plus_c), seed)
    z = np.random.default_rng(seed).uniform(-3, 3, (5, 3))
    a = z @ params["w"] + params["b"]
    z += ((np.sign(a) * np.maximum(np.abs(a), 0.5) - a) / (params["w"] @ params["w"]))[:, None] * params["w"]
    points = z if direction == "forward" else tf.Planar().forward(params, z)[0]
    theta, unflatten = flatten(params)
    loss = weighted_loss(direction, unflatten, points, seed)
    expected = finite_difference_grad(loss, theta)
    assert np.max(np.abs(grad(loss)(theta) - expected) / np.maximum(1, np.abs(expected))) <= 1e-6


@pytest.mark.parametrize("one_plus_c", LIMITS)
@given(seed=seeds)
@examples(10)
def test_inverse_gradient_makes_the_round_trip_constant(one_plus_c, seed):
    """f(theta, f^-1(theta, x)) = x and the log-dets add to 0 for every theta, so their gradients
    vanish; a wrong VJP for any of w^T x, c, b would leave J_f times its error (J_f is invertible).
    Checked on the hyperplane a = 0, relative to the size of the inverse's own gradient; measured
    <= 6e-15 for the points and <= 2e-15 / (1 + c) for the log-dets (1e-12 at 1 + c = 1e-2)."""
    params = layer_at(wu_at(one_plus_c), seed)
    x = tf.Planar().forward(params, with_points_on_the_hyperplane(params, seed))[0]
    weights = np.random.default_rng(seed).standard_normal(x.shape)
    theta, unflatten = flatten(params)

    def round_trip(theta, part):
        z, log_det_inverse = tf.Planar().inverse(unflatten(theta), x)
        x_back, log_det = tf.Planar().forward(unflatten(theta), z)
        return anp.sum(x_back * weights) if part == "points" else anp.sum((log_det_inverse + log_det) * weights[:, 0])
    size = np.abs(grad(weighted_loss("inverse", unflatten, x, seed))(theta)).max()
    assert np.abs(grad(round_trip)(theta, "points")).max() <= 1e-13 * size
    assert np.abs(grad(round_trip)(theta, "log_dets")).max() <= 1e-12 / one_plus_c * size


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("wu", [wu_at(1e-8), -40.0, 0.0, 1e4])
def test_gradients_are_finite_at_the_limit_and_extremes(direction, wu):
    layer = tf.Planar()
    params = layer_at(wu, seed=1, b_max=10.0)
    z = np.vstack([with_points_on_the_hyperplane(params, 1), 1e3 * np.ones((1, 3))])

    def total(params, points):
        out, log_det = getattr(layer, direction)(params, points)
        return anp.sum(out) + anp.sum(log_det)
    for gradient in flatten(grad(total)(params, z))[0], grad(total, 1)(params, z):
        assert np.all(np.isfinite(gradient))


@given(case=strategies.layer_case(tf.Planar(), dim=2))
@examples(10)
def test_check_layer_passes(case):
    tf.check_layer(tf.Planar(), *case)


# The forward map as one autograd primitive (planar_backprop.planar) against the readable
# autograd.numpy expression it replaces (planar.planar_plain): the same values and the same
# gradients w.r.t. z, u, w and b, to rounding, at ordinary parameters, near the invertibility
# limit (w^T u down to -40: 1 + c = 4e-18), far from it (w^T u = 1e4), and where tanh saturates.
PRIMITIVE_TOL = 1e-12


def primitive_case(seed, wu, b_max, z_scale, dim):
    params = layer_at(wu, seed, dim, w_norm=(0.1, 3.0), b_max=b_max)
    z = with_points_on_the_hyperplane(params, seed, n=10) * z_scale
    return z, params["u"], params["w"], params["b"]


def weighted_outputs(f, seed, shape):
    """args -> sum(gx * x) + sum(gl * log_det) for random cotangents: its gradient is the VJP."""
    rng = np.random.default_rng(seed + 7)
    gx, gl = rng.standard_normal(shape), rng.standard_normal(shape[0])

    def loss(*args):
        x, log_det = f(*args)
        return anp.sum(gx * x) + anp.sum(gl * log_det)
    return loss


def relative(a, b):
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


primitive_cases = given(seed=seeds, wu=st.one_of(st.floats(-40, 10), st.sampled_from([wu_at(1e-8), -40.0, 1e4])),
                        b_max=st.sampled_from([3.0, 30.0]), z_scale=st.sampled_from([1.0, 20.0]),
                        dim=st.integers(1, 3))


@primitive_cases
@examples(40)
def test_primitive_computes_the_readable_forward(seed, wu, b_max, z_scale, dim):
    args = primitive_case(seed, wu, b_max, z_scale, dim)
    for fast, plain in zip(planar(*args), planar_plain(*args)):
        assert relative(fast, plain) <= PRIMITIVE_TOL


@primitive_cases
@examples(40)
def test_primitive_gradients_match_autograd_of_the_readable_forward(seed, wu, b_max, z_scale, dim):
    """Tanh saturates (|a| up to ~100) where b_max = 30 or z_scale = 20; half the points sit on a = 0."""
    args = primitive_case(seed, wu, b_max, z_scale, dim)
    fast, plain = (weighted_outputs(f, seed, args[0].shape) for f in (planar, planar_plain))
    for argnum, arg in enumerate(args):
        got, want = grad(fast, argnum)(*args), grad(plain, argnum)(*args)
        assert np.shape(got) == np.shape(arg) and relative(got, want) <= PRIMITIVE_TOL, f"argument {argnum}"


@given(seed=seeds, dim=st.integers(1, 3))
@examples(10)
def test_primitive_gradients_match_finite_differences(seed, dim):
    params = strategies.perturb_params(tf.Planar(), dim, seed, 1.0)
    z = np.random.default_rng(seed).uniform(-3, 3, (6, dim))
    args = [z, params["u"], params["w"], params["b"]]
    loss = weighted_outputs(planar, seed, z.shape)
    for argnum in range(4):
        theta = np.ravel(args[argnum]).astype(float)

        def along(theta):
            return loss(*args[:argnum], theta.reshape(np.shape(args[argnum])), *args[argnum + 1:])
        expected = finite_difference_grad(along, theta)
        got = np.ravel(grad(loss, argnum)(*args))
        assert relative(got, expected) <= 1e-6, f"argument {argnum}"


def test_forward_records_one_node_per_layer():
    """The primitive, and one read of each of its two outputs: three nodes, where the readable
    expression records 17 (z alone traced; 28 when the parameters are traced too, as in training).
    Counted as chapter 8 counts them; the other 4 are the input, two sums and their addition."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort
    params = tf.Planar().init(np.random.default_rng(0), 2)

    def layer_nodes(forward):
        def total(z):
            x, log_det = forward(z)
            return anp.sum(x) + anp.sum(log_det)
        _, end = trace(VJPNode.new_root(), total, np.random.default_rng(1).standard_normal((4, 2)))
        return sum(1 for _ in toposort(end)) - 4
    assert layer_nodes(lambda z: tf.Planar().forward(params, z)) == 3
    assert layer_nodes(lambda z: planar_plain(z, params["u"], params["w"], params["b"])) >= 15

"""The rational-quadratic spline's own properties (the shared layer contract is in test_layers.py):
the primitive against the plain expression, the points where splines break (knots, the ends of
the interval, the tails, extreme logits), finite gradients there in both directions, continuity
of the map and its slope at +-B, and monotonicity.

theta is drawn as N(0, scale^2) logits, scale up to 3 (bin sizes and slopes over e^6 apart), and
separately as extreme logits, up to +-1e3, where every floor (1e-3 bins and derivatives) is hit.
"""
import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow.spline import knots, rational_quadratic_plain
from tinyflow.spline_backprop import MIN_BIN, MIN_DERIVATIVE, rational_quadratic

BOUND = 2.0
GRAD_TOL = 1e-9            # primitive against autograd on the plain expression, relative to the largest
                           # entry: both exact up to rounding (max 1e-9 held over 150 draws per direction)
directions = pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])


@st.composite
def spline_draw(draw, extreme=False):
    """(theta (N, D, 3K - 1), K): per-point splines, as a coupling's conditioner gives them."""
    num_bins, n, dim = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if extreme:
        theta = rng.choice([-1e3, -30.0, 0.0, 30.0, 1e3], size=(n, dim, 3 * num_bins - 1))
    else:
        theta = draw(st.floats(0.1, 3.0)) * rng.standard_normal((n, dim, 3 * num_bins - 1))
    return theta, num_bins


def special_points(theta, inverse, rng):
    """Points on every knot (x-knots forward, y-knots inverse), on +-B, just inside and outside,
    in the tails and uniform in between: (N, D) per column of candidates, for each spline."""
    xk, yk, _ = (np.asarray(a) for a in knots(theta, BOUND))
    on_knots = (yk if inverse else xk)
    n, dim = theta.shape[:2]
    candidates = np.concatenate([on_knots, np.broadcast_to([-BOUND - 1e-9, BOUND + 1e-9, -5.0, 7.0], (n, dim, 4)),
                                 rng.uniform(-BOUND, BOUND, (n, dim, 4))], axis=2)
    return [candidates[:, :, j] for j in range(candidates.shape[2])]


def loss(fn, inverse):
    """A scalar that uses both outputs, with weights that differ per point."""
    def f(v, theta):
        out, log_det = fn(v, theta, BOUND, inverse)
        return anp.sum(anp.sin(out) + 0.3 * out) + anp.sum(log_det * anp.cos(out))
    return f


@directions
@given(draw=spline_draw(), seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=30)
def test_primitive_matches_plain_expression_and_its_gradient(inverse, draw, seed):
    theta, num_bins = draw
    for j, v in enumerate(special_points(theta, inverse, np.random.default_rng(seed))):
        fast, plain = rational_quadratic(v, theta, BOUND, inverse), rational_quadratic_plain(v, theta, BOUND, inverse)
        # the two sum the knots in another order (cumsum, matrix product), one ulp apart; a bin down to
        # 2e-3 wide with slopes up to e^6 amplifies that in the inverse's log-det, by up to 5e-8 on the
        # worst draw hypothesis has found (each is held to a 60-digit reference on its own knots, to a
        # few ulps, in test_spline_accuracy.py), hence 1e-6 here
        np.testing.assert_allclose(fast[0], plain[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast[1], plain[1], rtol=1e-6, atol=1e-6)
        if 0 < j < num_bins:     # on an interior knot g'' jumps: the gradient of log g' depends on
            continue             # the bin chosen, and an ulp decides it
        for argnum in (0, 1):
            g_fast = autograd.grad(loss(rational_quadratic, inverse), argnum)(v, theta)
            g_plain = autograd.grad(loss(rational_quadratic_plain, inverse), argnum)(v, theta)
            scale = max(1.0, np.abs(g_plain).max())
            assert np.abs(g_fast - g_plain).max() <= GRAD_TOL * scale


@directions
def test_primitive_sums_gradient_over_batch_for_shared_theta(inverse):
    rng = np.random.default_rng(0)
    theta, v = rng.standard_normal((3, 3 * 5 - 1)), rng.uniform(-3, 3, (6, 3))
    shared = autograd.grad(loss(rational_quadratic, inverse), 1)(v, theta)
    per_point = autograd.grad(loss(rational_quadratic, inverse), 1)(v, np.broadcast_to(theta, (6, 3, 14)) + 0.0)
    np.testing.assert_allclose(shared, per_point.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_zero_theta_is_the_identity():
    v = np.linspace(-5, 5, 101)[:, None]
    out, log_det = rational_quadratic(v, np.zeros((1, 3 * 8 - 1)), BOUND, False)
    assert np.abs(out - v).max() < 1e-15 and np.abs(log_det).max() < 1e-15


@given(draw=spline_draw(extreme=True))
@settings(max_examples=30)
def test_end_knots_are_pinned_and_floors_hold(draw):
    theta, num_bins = draw
    xk, yk, d = (np.asarray(a) for a in knots(theta, BOUND))
    for k in (xk, yk):
        assert np.all(k[..., 0] == -BOUND) and np.all(k[..., -1] == BOUND)
        assert np.all(np.diff(k, axis=-1) >= 2 * BOUND * MIN_BIN * (1 - 1e-9))
    assert np.all(d[..., [0, -1]] == 1.0) and np.all(d >= MIN_DERIVATIVE)


@directions
@given(draw=spline_draw(), seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=30)
def test_round_trip_holds_on_knots_ends_and_tails(inverse, draw, seed):
    theta, _ = draw
    for v in special_points(theta, inverse, np.random.default_rng(seed)):
        there, log_det = rational_quadratic(v, theta, BOUND, inverse)
        back, log_det_back = rational_quadratic(there, theta, BOUND, not inverse)
        assert np.abs(back - v).max() <= 1e-9 * max(1.0, np.abs(v).max())   # slopes up to e^6 amplify rounding
        # log g' is ill-conditioned in a bin 2e-3 wide with slopes ~e^6 (|d log g'/dx| up to 1e6): over
        # 3000 draws the log-dets of a round trip differed by up to 4e-7 (test_layers holds 1e-8 on
        # the layers' milder draws); a missing or wrong term is off by O(1)
        assert np.abs(log_det + log_det_back).max() <= 1e-6 * max(1.0, np.abs(log_det).max())


@directions
@given(draw=spline_draw(extreme=True), seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=30)
def test_extreme_logits_give_finite_values_and_gradients(inverse, draw, seed):
    theta, _ = draw
    for v in special_points(theta, inverse, np.random.default_rng(seed)):
        out, log_det = rational_quadratic(v, theta, BOUND, inverse)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(log_det))
        for argnum in (0, 1):
            assert np.all(np.isfinite(autograd.grad(loss(rational_quadratic, inverse), argnum)(v, theta)))
            assert np.all(np.isfinite(autograd.grad(loss(rational_quadratic_plain, inverse), argnum)(v, theta)))


@directions
def test_y_on_a_knot_inverts_to_the_x_knot(inverse):
    """y = y_k makes the quadratic's c = 0: the root is xi = 0 exactly, the point x_k."""
    rng = np.random.default_rng(1)
    theta = 2 * rng.standard_normal((1, 1, 3 * 6 - 1))
    xk, yk, _ = (np.asarray(a)[0, 0] for a in knots(theta, BOUND))
    x, _ = rational_quadratic(yk[None, :], theta[0], BOUND, True)
    np.testing.assert_allclose(x[0], xk, rtol=0, atol=1e-14)    # knots() and the primitive differ by ulps


@given(draw=spline_draw())
@settings(max_examples=20)
def test_batch_entirely_in_the_tails_is_the_identity_with_zero_gradient_on_theta(draw):
    theta, _ = draw
    n, dim = theta.shape[:2]
    v = np.where(np.arange(n * dim).reshape(n, dim) % 2 == 0, -BOUND - 3.0, BOUND + 0.5)
    for inverse in (False, True):
        out, log_det = rational_quadratic(v, theta, BOUND, inverse)
        assert np.array_equal(out, v) and np.all(log_det == 0)
        assert np.all(autograd.grad(loss(rational_quadratic, inverse), 1)(v, theta) == 0)


@given(draw=spline_draw())
@settings(max_examples=30)
def test_map_and_slope_are_continuous_at_both_ends(draw):
    theta, _ = draw
    eps = 1e-10       # the slope moves by g'' eps inside, and g'' reaches ~1e4 in a 2e-3-wide end bin
    for end in (-BOUND, BOUND):
        inside = np.full(theta.shape[:2], end - np.sign(end) * eps)
        outside = np.full(theta.shape[:2], end + np.sign(end) * eps)
        y_in, log_slope_in = rational_quadratic(inside, theta, BOUND, False)
        y_out, log_slope_out = rational_quadratic(outside, theta, BOUND, False)
        assert np.abs(y_in - y_out).max() <= 3 * eps                      # slope 1 on both sides
        assert np.abs(log_slope_in).max() <= 1e-4 and np.all(log_slope_out == 0)   # d_0 = d_K = 1


@given(draw=spline_draw())
@settings(max_examples=30)
def test_map_is_strictly_increasing(draw):
    theta, _ = draw
    n, dim = theta.shape[:2]
    grid = np.linspace(-BOUND - 1, BOUND + 1, 2001)
    for i in range(n):
        v = np.broadcast_to(grid[:, None], (len(grid), dim))
        out, _ = rational_quadratic(v, theta[i], BOUND, False)
        assert np.all(np.diff(out, axis=0) > 0)


@pytest.mark.parametrize("make", [lambda: tf.SplineCoupling([1, 0], (8,)), lambda: tf.SplineAutoregressive((8,)),
                                  lambda: tf.RationalQuadraticSpline()], ids=["coupling", "autoregressive", "elementwise"])
def test_layer_starts_as_the_identity(make):
    layer = make()
    params = layer.init(np.random.default_rng(0), 2)
    x = np.random.default_rng(1).uniform(-5, 5, (50, 2))
    y, log_det = layer.forward(params, x)
    assert np.abs(y - x).max() < 1e-14 and np.abs(log_det).max() < 1e-14


@pytest.mark.parametrize("bad, error, message", [({"num_bins": 0}, ValueError, "num_bins must be >= 1"),
                                                 ({"num_bins": 2.5}, TypeError, "num_bins must be an int"),
                                                 ({"bound": -1.0}, ValueError, "bound"),
                                                 ({"num_bins": True}, TypeError, "num_bins must be an int")])
def test_bad_hyperparameters_raise_an_error_naming_them(bad, error, message):
    for make in (tf.RationalQuadraticSpline, lambda **kw: tf.SplineCoupling([1, 0], **kw),
                 lambda **kw: tf.SplineAutoregressive(**kw)):
        with pytest.raises(error, match=message):
            make(**bad)


def test_numpy_integers_are_whole_numbers_of_bins():
    assert tf.SplineCoupling([1, 0], num_bins=np.int64(8)).num_bins == 8

"""The layer contract, one property per test, parametrised over every layer so each layer fails
on its own line. Hypothesis draws the parameters (pushed away from init) and the inputs; see
strategies_core.py for why inputs stay within |x| <= 3 and away from 0.

Errors are relative, |a - b| <= tol * max(1, |b|), as in tinyflow.check.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow.strategies import perturb_params
from strategies_core import HIDDEN, LAYER_NAMES, LAYERS, GivenContext, layer_draw

# Round trips are exact up to rounding amplified by the inverse's sensitivity |dx/dy| |y|: for the
# IAF at D = 5 with drawn parameters that reaches ~1e6 (five scales up to e^5 compound through the
# conditioner), and the measured error stays within 1.2x of eps * |dx/dy| |y| (max 8.8e-10 in
# 100 draws per layer; every other affine layer below 1e-12). A wrong inverse is off by O(1), far
# above 1e-8. The autoregressive splines are more sensitive still; round_trip_tolerance below
# measures the sensitivity of each draw.
ROUND_TRIP_TOL = 1e-8
AUTOGRAD_TOL = 1e-8        # log_det and autograd's Jacobian are both exact up to rounding
FINITE_DIFF_TOL = 1e-6     # central differences, h = 1e-5: O(h^2) truncation + O(eps/h) rounding


def finite_difference_log_det(f, x, name):
    """log|det| of the central-difference Jacobian of f at x, and the tolerance to hold it to.

    The difference is taken at h and h / 2, and a draw where the two disagree by more than a third
    of the tolerance (the difference has not converged there) is not used; the autograd-Jacobian
    test holds every draw's log-det to 1e-8. Non-convergence is real, not a layer's fault: beside a
    planar layer's hyperplane near its invertibility limit (1 + c ~ 2e-3, |w| ~ 3.5) the inverse's
    Jacobian varies on a scale of 1e-3, and the h = 1e-5 difference was off by 1.2e-5 (1.2e-7 at
    h = 1e-6), about once in 10,000 draws. h = 1e-5 and FINITE_DIFF_TOL, except for the splines:
    their slopes span 1e-3..1e3 and a bin can be 0.01 wide, so truncation and rounding cannot both
    stay below 1e-6 (over 1050 drawn spline layers the largest forward error was 1.6e-5 at
    h = 1e-5, 1.2e-5 at h = 1e-6, 2.0e-6 at h = 3e-6), and within h of a knot, where f'' jumps, a
    central difference is only first-order."""
    h, tol = (3e-6, 1e-5) if "Spline" in name else (1e-5, FINITE_DIFF_TOL)
    coarse, fine = (log_abs_det(tf.numerical_jacobian(f, x, h=step)) for step in (h, h / 2))
    assume(relative_error(coarse, fine) <= tol / 3)
    return fine, tol


every_layer = pytest.mark.parametrize("name", LAYER_NAMES)
# 20 layers x 11 properties: 15 draws per layer and property for the cheap checks and 8 where each
# draw builds autograd Jacobians keep this file near 15 s of CPU; scaled with the loaded profile's
# max_examples (25 by default), so HYPOTHESIS_PROFILE=dev still explores 12x more.
_scale = settings.default.max_examples / 25
CHEAP, COSTLY = settings(max_examples=round(15 * _scale)), settings(max_examples=round(8 * _scale))


def relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


def log_abs_det(jacobians):
    sign, log_det = np.linalg.slogdet(jacobians)
    assert np.all(sign != 0), "the Jacobian is singular"
    return log_det


def round_trip_tolerance(second, point):
    """ROUND_TRIP_TOL, or more where the map applied second amplifies the first one's rounding:
    10 eps |J| max(1, |point|), J its Jacobian at point (row sums of |J|). An autoregressive
    spline stacks slopes up to ~1e3 through D conditioners, and its sensitivity reaches 1e8-1e9 on
    drawn parameters; the measured error stays below 0.9 eps |J| |point| (300 draws). Draws where
    even that bound would exceed 1e-4 say nothing about the inverse, so they are not used."""
    jacobians = tf.autograd_jacobian(second, point)
    sensitivity = np.max(np.abs(jacobians).sum(axis=2)) * np.max(np.maximum(1.0, np.abs(point)))
    tol = max(ROUND_TRIP_TOL, 10 * np.finfo(float).eps * sensitivity)
    assume(tol <= 1e-4)
    return tol


@every_layer
@given(data=st.data())
@CHEAP
def test_inverse_undoes_forward(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    y, _ = layer.forward(params, x)
    tol = round_trip_tolerance(lambda p: layer.inverse(params, p)[0], y)
    assert relative_error(layer.inverse(params, y)[0], x) <= tol


@every_layer
@given(data=st.data())
@CHEAP
def test_forward_undoes_inverse(name, data):
    layer, params, _, y = data.draw(layer_draw(name))
    x, _ = layer.inverse(params, y)
    tol = round_trip_tolerance(lambda p: layer.forward(params, p)[0], x)
    assert relative_error(layer.forward(params, x)[0], y) <= tol


@every_layer
@given(data=st.data())
@COSTLY
def test_log_det_matches_autograd_jacobian(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    jacobians = tf.autograd_jacobian(lambda p: layer.forward(params, p)[0], x)
    log_det = layer.forward(params, x)[1]
    assert log_det.shape == (len(x),)
    assert relative_error(log_det, log_abs_det(jacobians)) <= AUTOGRAD_TOL


@every_layer
@given(data=st.data())
@CHEAP
def test_log_det_matches_finite_difference_jacobian(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    log_det, tol = finite_difference_log_det(lambda p: layer.forward(params, p)[0], x, name)
    assert relative_error(layer.forward(params, x)[1], log_det) <= tol


@every_layer
@given(data=st.data())
@CHEAP
def test_inverse_log_det_matches_finite_difference_jacobian(name, data):
    layer, params, _, y = data.draw(layer_draw(name))
    log_det, tol = finite_difference_log_det(lambda p: layer.inverse(params, p)[0], y, name)
    assert relative_error(layer.inverse(params, y)[1], log_det) <= tol


@every_layer
@given(data=st.data())
@CHEAP
def test_inverse_log_det_is_minus_forward_log_det(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    y, log_det = layer.forward(params, x)
    assert relative_error(layer.inverse(params, y)[1], -log_det) <= ROUND_TRIP_TOL


def leaves(tree):
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in leaves(value)]
    if isinstance(tree, list):
        return [leaf for value in tree for leaf in leaves(value)]
    return [np.asarray(tree)]


@every_layer
def test_same_seed_gives_same_parameters(name):
    factory, dim = LAYERS[name]
    first = factory().init(np.random.default_rng(7), dim)
    second = factory().init(np.random.default_rng(7), dim)
    assert type(first) is type(second) and len(leaves(first)) == len(leaves(second))
    assert all(a.dtype == np.float64 and np.array_equal(a, b) for a, b in zip(leaves(first), leaves(second)))


# --- Jacobian structure ------------------------------------------------------------------------

COUPLINGS = [name for name in LAYER_NAMES if name.startswith(("Coupling", "SplineCoupling"))]


@pytest.mark.parametrize("name", COUPLINGS)
@given(data=st.data())
@COSTLY
def test_coupling_keeps_masked_coordinates_exactly(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    y, _ = layer.forward(params, x)
    jacobians = tf.autograd_jacobian(lambda p: layer.forward(params, p)[0], x)
    kept = layer.index_a
    assert np.array_equal(y[:, kept], x[:, kept])
    assert np.array_equal(jacobians[:, kept, :], np.broadcast_to(np.eye(x.shape[1])[kept], (len(x), len(kept), x.shape[1])))


@pytest.mark.parametrize("name", COUPLINGS)
@given(data=st.data())
@COSTLY
def test_coupling_jacobian_is_triangular_with_kept_coordinates_first(name, data):
    layer, params, x, _ = data.draw(layer_draw(name))
    jacobians = tf.autograd_jacobian(lambda p: layer.forward(params, p)[0], x)
    order = np.concatenate([layer.index_a, layer.index_b])
    reordered = jacobians[:, order][:, :, order]
    assert np.all(np.triu(reordered, 1) == 0)      # exact zeros: y_b depends on x_b elementwise
    assert np.abs(reordered).max() > 0


AUTOREGRESSIVE = [name for name in LAYER_NAMES if name.startswith(("IAF", "MAF", "SplineIAF", "SplineMAF"))]


def conditioner_output(layer, params, x):
    """The autoregressive conditioner's first output channel at x: (N, D), column i from x_<i
    (and, for a conditional layer, the context)."""
    context = None
    if isinstance(layer, GivenContext):
        layer, params, context = layer.layer, params["layer"], layer.context(params, len(x))
    if isinstance(layer, tf.Invert):
        layer = layer.layer
    if isinstance(layer, tf.SplineAutoregressive):
        return layer.theta(params, x, context)[:, :, 0]      # the first width logit of each spline
    return layer.mu_s(params, x, context)[0]                  # the shift mu


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@given(data=st.data())
@COSTLY
def test_autoregressive_jacobian_is_lower_triangular(name, direction, data):
    layer, params, x, y = data.draw(layer_draw(name))
    step = getattr(layer, direction)
    jacobians = tf.autograd_jacobian(lambda p: step(params, p)[0], x if direction == "forward" else y)
    assert np.all(np.triu(jacobians, 1) == 0)     # exact zeros: the MADE masks cut every path j >= i
    dim = x.shape[1]
    if dim > 1:   # with pushed parameters the conditioner really uses earlier coordinates.
        # Checked on the conditioner at the drawn point, not on the whole layer: a MAF's forward
        # pass (the IAF's inverse) can scale its inputs by e^5 per pass, and at |z| ~ 100 every
        # tanh unit saturates to exactly +-1, so the layer's off-diagonal entries are exact zeros.
        conditioner = tf.autograd_jacobian(lambda p: conditioner_output(layer, params, p), x)
        assert np.abs(np.tril(conditioner, -1)).max() > 0


@given(seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=10)
def test_parameters_are_pushed_away_from_init(seed):
    """Guard for the strategy itself: a drawn coupling has a non-zero log-det."""
    layer = tf.AffineCoupling([1, 0], hidden=HIDDEN)
    params = perturb_params(layer, 2, seed, 0.3)
    _, log_det = layer.forward(params, np.array([[0.5, -1.0], [2.0, 1.0]]))
    assert np.all(np.abs(log_det) > 1e-6)

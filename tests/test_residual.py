"""InvertibleResidual (tinyflow/residual.py): the layer contract with the exact log-det, the
fixed-point inverse and its gradients, the Lipschitz bound, and bad hyperparameters.

strong_layer (residual_cases.py) is a g whose Jacobian norm is within 1% of its bound c near 0.
"""
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from residual_cases import strong_layer
from tinyflow.residual import InvertibleResidual
from tinyflow.strategies import layer_case, perturb_params

FAST = dict(hidden=(8, 8))
CASES = [(activation, dim) for activation in ("lipswish", "tanh", "elu") for dim in (1, 2, 3)]


def finite_difference_gradient(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


@pytest.mark.parametrize("activation, dim", CASES)
@given(data=st.data())
@settings(max_examples=6)
def test_layer_obeys_the_contract_with_its_exact_log_det(activation, dim, data):
    layer = InvertibleResidual(lipschitz=0.97, activation=activation, **FAST)
    params, x = data.draw(layer_case(layer, dim, n=6))
    errors = tf.check_layer(layer, params, x)                       # raises if any exceeds 1e-6
    assert errors["round trip x -> y -> x"] <= 1e-10 and errors["round trip y -> x -> y"] <= 1e-10
    assert errors["log_det vs autograd Jacobian"] <= 1e-12
    assert errors["inverse log_det + forward log_det"] <= 1e-12


@pytest.mark.parametrize("c", [0.5, 0.9, 0.99])
def test_fixed_point_inverse_is_accurate_to_1e_10_near_the_bound(c):
    layer, params = strong_layer(c)
    x = np.random.default_rng(1).uniform(-0.3, 0.3, (64, 2))
    y = layer.forward(params, x)[0]
    assert np.max(np.abs(layer.inverse(params, y)[0] - x)) <= 1e-10
    assert np.max(np.abs(layer.forward(params, layer.inverse(params, x)[0])[0] - x)) <= 1e-10


@pytest.mark.parametrize("c", [0.5, 0.9, 0.99])
def test_fixed_point_error_stays_within_the_banach_bound(c):
    layer, params = strong_layer(c)
    y = np.random.default_rng(2).uniform(-0.3, 0.3, (16, 2))
    solution, steps = layer.solve(params, y)
    first = np.linalg.norm(y - layer.g(params, y) - y, axis=1)
    x = y
    for k in range(1, 40):
        x = y - layer.g(params, x)
        assert np.all(np.linalg.norm(x - solution, axis=1) <= c ** k / (1 - c) * first + 1e-12)   # solve's own TOL
    assert steps <= np.ceil(np.log(1e-12 * (1 - c) / first.max()) / np.log(c))   # the a priori count


def test_fixed_point_takes_more_steps_as_c_grows():
    y = np.random.default_rng(3).uniform(-0.3, 0.3, (16, 2))
    steps = [strong_layer(c)[0].solve(strong_layer(c)[1], y)[1] for c in (0.5, 0.9, 0.99)]
    assert steps[0] < steps[1] < steps[2]


@pytest.mark.parametrize("activation", ["lipswish", "tanh", "elu"])
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.3, 1.5))
@settings(max_examples=5)
def test_g_is_c_lipschitz_on_random_pairs(activation, seed, scale):
    layer = InvertibleResidual(lipschitz=0.9, activation=activation, **FAST)
    params = perturb_params(layer, 3, seed, scale)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (2000, 3))
    x_near = x + 10.0 ** rng.uniform(-6, 0, (2000, 1)) * rng.standard_normal((2000, 3))   # close pairs too
    ratio = np.linalg.norm(layer.g(params, x) - layer.g(params, x_near), axis=1) / np.linalg.norm(x - x_near, axis=1)
    assert ratio.max() <= 0.9 * (1 + 1e-9)


def test_lipschitz_bound_is_nearly_reached_by_the_strong_layer():
    layer, params = strong_layer(0.97)
    jacobians = tf.autograd_jacobian(lambda p: layer.g(params, p), np.array([[0.05, -0.02]]))
    assert 0.96 <= np.linalg.norm(jacobians[0], 2) <= 0.97


@pytest.mark.parametrize("activation", ["lipswish", "tanh"])
def test_exact_log_det_gradient_matches_finite_differences(activation):
    layer = InvertibleResidual(lipschitz=0.97, activation=activation, **FAST)
    theta, unflatten = flatten(perturb_params(layer, 2, 4, 1.0))
    x = tf.strategies.both_signs(np.random.default_rng(0).uniform(-2, 2, (5, 2)))
    loss = lambda t: np.sum(layer.forward(unflatten(t), x)[1] + layer.forward(unflatten(t), x)[0][:, 0])
    assert np.max(np.abs(grad(loss)(theta) - finite_difference_gradient(loss, theta))) <= 1e-7


def test_inverse_gradient_matches_finite_differences():
    layer = InvertibleResidual(lipschitz=0.97, **FAST)
    theta, unflatten = flatten(perturb_params(layer, 2, 5, 1.0))
    y = tf.strategies.both_signs(np.random.default_rng(1).uniform(-2, 2, (5, 2)))
    weights = np.random.default_rng(2).standard_normal((5, 2))
    loss = lambda t: np.sum(layer.inverse(unflatten(t), y)[1] + np.sum(weights * layer.inverse(unflatten(t), y)[0]))
    assert np.max(np.abs(grad(loss)(theta) - finite_difference_gradient(loss, theta))) <= 1e-7


def test_inverse_jacobian_in_y_matches_finite_differences():
    layer, params = strong_layer(0.99)
    y = np.random.default_rng(4).uniform(-0.3, 0.3, (4, 2))
    inverse = lambda p: layer.inverse(params, p)[0]
    assert np.max(np.abs(tf.autograd_jacobian(inverse, y) - tf.numerical_jacobian(inverse, y))) <= 1e-8


def test_layer_starts_as_the_identity():
    layer = InvertibleResidual()
    params = layer.init(np.random.default_rng(0), 2)
    x = np.random.default_rng(1).standard_normal((5, 2))
    y, log_det = layer.forward(params, x)
    assert np.array_equal(y, x) and np.array_equal(log_det, np.zeros(5))


def test_saved_and_loaded_params_give_the_same_map(tmp_path):
    layer = InvertibleResidual(**FAST)                    # no power-iteration state to save beside params
    params = perturb_params(layer, 2, 6, 1.0)
    tf.save_params(tmp_path / "residual.npz", params)
    x = np.random.default_rng(0).standard_normal((5, 2))
    for direction in ("forward", "inverse"):
        first, second = (getattr(layer, direction)(p, x) for p in (params, tf.load_params(tmp_path / "residual.npz")))
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_params_hold_only_trainable_floats():
    params = InvertibleResidual(hidden=(16, 8)).init(np.random.default_rng(0), 3)
    assert [sorted(layer) for layer in params] == [["W", "b", "beta_raw"]] * 2 + [["W", "b"]]
    assert [layer["W"].shape for layer in params] == [(3, 16), (16, 8), (8, 3)]
    assert "beta_raw" not in InvertibleResidual(activation="tanh").init(np.random.default_rng(0), 2)[0]


def test_flow_of_inverted_residual_layers_samples_and_trains():
    flow = tf.Flow(tf.StandardNormal(2), [tf.Invert(InvertibleResidual(**FAST)) for _ in range(2)])
    params = flow.init(np.random.default_rng(0))
    params["layers"] = [perturb_params(layer, 2, k, 0.5) for k, layer in enumerate(flow.layers)]
    z = np.random.default_rng(1).standard_normal((8, 2))
    x, log_det = flow.forward(params, z)                                # sampling: the fixed points
    assert np.max(np.abs(flow.trace(params, x, inverse=True)[-1] - z)) <= 1e-10
    assert np.allclose(flow.log_prob(params, x), flow.base.log_prob(params["base"], z) - log_det, rtol=0, atol=1e-10)
    gradient = grad(lambda p: -np.mean(flow.log_prob(p, x)))(params)   # density: the explicit maps
    assert all(np.all(np.isfinite(leaf)) for leaf in flatten(gradient)[0])


@pytest.mark.parametrize("kwargs, error", [
    (dict(lipschitz=1.0), ValueError), (dict(lipschitz=0.0), ValueError), (dict(lipschitz=1.5), ValueError),
    (dict(lipschitz=-0.5), ValueError), (dict(lipschitz="0.9"), TypeError), (dict(lipschitz=True), TypeError),
    (dict(activation="relu"), ValueError), (dict(hidden=()), ValueError), (dict(hidden=(8, 0)), ValueError),
])
def test_bad_hyperparameters_raise_clear_errors(kwargs, error):
    with pytest.raises(error, match="lipschitz|activation|hidden"):
        InvertibleResidual(**kwargs)


def test_points_of_the_wrong_dimension_raise():
    layer = InvertibleResidual(**FAST)
    params = layer.init(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="2 columns"):
        layer.forward(params, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2 columns"):
        layer.inverse(params, np.zeros((4, 3)))

"""The log-det estimators of tinyflow/residual_estimators.py, graded against the exact log-det
in 2D: the truncated series is biased, by less as n grows and by more as c grows; Russian roulette
and its Neumann-series gradient are unbiased.

Statistical tests compare a mean over M independent draws with the exact value in units of its
standard error SE = sd / sqrt(M): "unbiased" means within 4 SE (a false alarm has probability
6e-5 per comparison under normality; the seeds are fixed, so the outcome is too), "biased" means
more than 10 SE away. The roulette tests keep rho(J)^2 < 1 - p, where its variance is finite.
"""
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten

import tinyflow as tf
from residual_cases import strong_layer
from tinyflow.residual import InvertibleResidual, network
from tinyflow.residual_estimators import (_roulette, _truncated, estimate_log_det, estimated_log_prob, roulette_plain,
                                          roulette_weights, truncated_plain)
from tinyflow.strategies import perturb_params

X = np.array([[0.1, -0.05], [-0.15, 0.2], [0.0, 0.1]])        # near 0, where |J_g| is within 1% of c
UNBIASED, BIASED = 4, 10


def z_scores(draws, exact):
    """(mean - exact) / SE per point; draws (M, N)."""
    return (draws.mean(axis=0) - exact) / (draws.std(axis=0) / np.sqrt(len(draws)))


def truncated_draws(layer, params, n_terms, M, seed):
    """M truncated estimates at each point of X (M, N), one probe each: X repeated M times."""
    rng = np.random.default_rng(seed)
    estimates = estimate_log_det(layer, params, np.tile(X, (M, 1)), rng, "truncated", n_terms=n_terms)
    return estimates.reshape(M, len(X))


def exact_trace_series(layer, params, n_terms):
    """The series with exact traces: in 2D the mean over the Rademacher probes (1, 1) and (1, -1)
    is tr(J^k) exactly (each v^T A v = A_11 + A_22 +- (A_12 + A_21))."""
    weights, betas = layer.weights(params)
    slopes = network(weights, betas, X, layer.activation)[1]
    return sum(truncated_plain(weights, slopes, np.ones_like(X) * v, n_terms) for v in ([1.0, 1.0], [1.0, -1.0])) / 2


def test_truncated_series_is_biased_with_few_terms_at_large_c():
    layer, params = strong_layer(0.97)
    draws = truncated_draws(layer, params, n_terms=2, M=4000, seed=0)
    assert np.all(z_scores(draws, estimate_log_det(layer, params, X, estimator="exact")) > BIASED)    # measured: 61-62


def test_truncated_series_is_unbiased_once_the_tail_is_negligible():
    layer, params = strong_layer(0.97)
    draws = truncated_draws(layer, params, n_terms=150, M=4000, seed=0)
    assert np.all(np.abs(z_scores(draws, estimate_log_det(layer, params, X, estimator="exact"))) < UNBIASED)


def test_truncated_series_bias_shrinks_as_terms_grow_within_the_iresnet_bound():
    c = 0.97
    layer, params = strong_layer(c)
    exact = estimate_log_det(layer, params, X, estimator="exact")
    biases = [np.max(np.abs(exact_trace_series(layer, params, n) - exact)) for n in (1, 2, 5, 10, 20, 50, 200)]
    bounds = [-2 * (np.log(1 - c) + sum(c ** k / k for k in range(1, n + 1))) for n in (1, 2, 5, 10, 20, 50, 200)]
    assert all(a > b for a, b in zip(biases, biases[1:]))
    assert all(bias <= bound for bias, bound in zip(biases, bounds))
    assert biases[-1] <= 1e-10


def test_truncated_series_bias_grows_with_c():
    biases = []
    for c in (0.5, 0.9, 0.97):
        layer, params = strong_layer(c)
        exact = estimate_log_det(layer, params, X, estimator="exact")
        biases.append(np.min(exact_trace_series(layer, params, 5) - exact))
    assert 0 < biases[0] < biases[1] < biases[2]                 # measured: 0.002, 0.156, 0.313


@pytest.mark.parametrize("c, p", [(0.5, 0.5), (0.9, 0.2)])
def test_russian_roulette_is_unbiased(c, p):
    layer, params = strong_layer(c)
    rng = np.random.default_rng(1)
    draws = np.array([estimate_log_det(layer, params, X, rng, "roulette", p=p) for _ in range(2000)])
    assert np.all(np.abs(z_scores(draws, estimate_log_det(layer, params, X, estimator="exact"))) < UNBIASED)


def test_russian_roulette_neumann_gradient_is_unbiased():
    layer, params = strong_layer(0.9)
    theta, unflatten = flatten(params)
    direction = np.random.default_rng(5).standard_normal(len(theta))
    rng = np.random.default_rng(2)
    exact = grad(lambda t: np.sum(estimate_log_det(layer, unflatten(t), X, estimator="exact")))(theta) @ direction
    estimate = grad(lambda t: np.sum(estimate_log_det(layer, unflatten(t), X, rng, "roulette", p=0.2)))
    draws = np.array([[estimate(theta) @ direction] for _ in range(800)])
    assert abs(z_scores(draws, exact)[0]) < UNBIASED


def test_russian_roulette_weights_are_inverse_survival_probabilities():
    p, n_exact = 0.3, 2
    survival = lambda m: 1.0 if m <= 0 else 1 - sum(p * (1 - p) ** (j - 1) for j in range(1, m))   # P(R >= m)
    expected = [1 / survival(k - n_exact) for k in range(1, 9)]
    assert np.allclose(roulette_weights(n_exact, 6, p), expected, rtol=1e-12, atol=0)


def test_estimates_are_reproducible_from_the_generator():
    layer, params = strong_layer(0.9)
    for estimator in ("truncated", "roulette"):
        first = estimate_log_det(layer, params, X, np.random.default_rng(7), estimator)
        assert np.array_equal(first, estimate_log_det(layer, params, X, np.random.default_rng(7), estimator))
        assert not np.array_equal(first, estimate_log_det(layer, params, X, np.random.default_rng(8), estimator))


def mixed_flow():
    """An explicit-density residual layer, a fixed-point one and an affine layer, pushed from init."""
    flow = tf.Flow(tf.StandardNormal(2), [tf.Invert(InvertibleResidual((8,))), tf.Affine(), InvertibleResidual((8,))])
    params = flow.init(np.random.default_rng(0))
    params["layers"] = [perturb_params(layer, 2, k, 0.8) for k, layer in enumerate(flow.layers)]
    return flow, params


def test_exact_estimated_log_prob_is_the_flows_log_prob():
    flow, params = mixed_flow()
    x = tf.strategies.both_signs(np.random.default_rng(3).uniform(-2, 2, (6, 2)))
    estimated = estimated_log_prob(flow, params, x, estimator="exact")
    assert np.allclose(estimated, flow.log_prob(params, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("estimator", ["exact", "truncated", "roulette"])
def test_loss_gradient_through_each_estimator_is_finite(estimator):
    flow, params = mixed_flow()
    x = np.random.default_rng(4).standard_normal((16, 2))
    loss = lambda p: -np.mean(estimated_log_prob(flow, p, x, np.random.default_rng(0), estimator, n_terms=5))
    assert all(np.all(np.isfinite(leaf)) for leaf in flatten(grad(loss)(params))[0])


def test_exact_loss_gradient_matches_finite_differences():
    flow, params = mixed_flow()
    theta, unflatten = flatten(params)
    x = tf.strategies.both_signs(np.random.default_rng(5).uniform(-2, 2, (4, 2)))
    loss = lambda t: -np.mean(estimated_log_prob(flow, unflatten(t), x, estimator="exact"))
    h = 1e-6
    difference = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    assert np.max(np.abs(grad(loss)(theta) - difference)) <= 1e-7


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(estimator="hutchinson"), ValueError, "estimator"), (dict(n_terms=0), ValueError, "n_terms"),
    (dict(p=1.0), ValueError, "p "), (dict(p=0), ValueError, "p "), (dict(n_exact=-1), ValueError, "n_exact"),
    (dict(rng=None), TypeError, "Generator"), (dict(rng=0), TypeError, "Generator"),
])
def test_bad_estimator_arguments_raise_clear_errors(kwargs, error, match):
    layer, params = strong_layer(0.9)
    arguments = dict(rng=np.random.default_rng(0), estimator="roulette") | kwargs
    with pytest.raises(error, match=match):
        estimate_log_det(layer, params, X, **arguments)


def test_log_det_needs_an_invertible_residual_layer():
    with pytest.raises(TypeError, match="InvertibleResidual"):
        estimate_log_det(tf.Affine(), {}, X, np.random.default_rng(0))


def readable_estimate(layer, estimator, v, num_terms):
    """The readable estimator (autograd through every product) as a function of (params, x)."""
    def estimate(params, x):
        weights, betas = layer.weights(params)
        slopes = network(weights, betas, x, layer.activation)[1]
        if estimator == "truncated":
            return truncated_plain(weights, slopes, v, num_terms)
        return roulette_plain(weights, slopes, v, num_terms, 0.5, 2)
    return estimate


@pytest.mark.parametrize("estimator, activation, dim", [("truncated", "lipswish", 2), ("truncated", "tanh", 3),
                                                        ("roulette", "lipswish", 2), ("roulette", "elu", 3)])
def test_fast_estimators_give_the_readable_values_and_gradients(estimator, activation, dim):
    """Values from plain products and gradients from one traced product (the surrogate) equal
    autograd's through every product of the readable version, to 1e-12."""
    layer = InvertibleResidual((8, 6), 0.9, activation)
    params = perturb_params(layer, dim, 3, 1.0)
    x = np.random.default_rng(4).uniform(-2, 2, (5, dim))
    v = 2.0 * np.random.default_rng(5).integers(0, 2, (5, dim)) - 1.0
    weights_out = np.random.default_rng(6).standard_normal(5)
    for num_terms in (1, 2, 7):
        if estimator == "truncated":
            fast = lambda p, x: _truncated(layer, p, x, v, num_terms)[1]
        else:
            fast = lambda p, x: _roulette(layer, p, x, v, FixedDraw(num_terms - 2), 0.5, 2)[1]
        plain = readable_estimate(layer, estimator, v, num_terms)
        if estimator == "roulette" and num_terms < 3:
            continue                                           # R >= 1: at least n_exact + 1 terms
        assert np.max(np.abs(fast(params, x) - plain(params, x))) <= 1e-12
        for argnum in (0, 1):
            got = flatten(grad(lambda p, x: np.sum(weights_out * fast(p, x)), argnum)(params, x))[0]
            want = flatten(grad(lambda p, x: np.sum(weights_out * plain(p, x)), argnum)(params, x))[0]
            assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))


class FixedDraw:
    """A stand-in Generator whose geometric draw is fixed: R known in advance."""
    def __init__(self, R):
        self.R = R

    def geometric(self, p):
        return self.R


def test_given_probes_average_to_the_exact_trace_series_in_2d():
    """With v = (1, 1) and (1, -1) (v and -v give the same v^T A v) the mean truncated estimate is
    sum_k (-1)^(k+1) tr(J^k) / k, computed here from autograd's Jacobian of g."""
    layer, params = strong_layer(0.9)
    J = tf.autograd_jacobian(lambda p: layer.g(params, p), X)
    series = sum((-1) ** (k + 1) / k * np.trace(np.linalg.matrix_power(J, k), axis1=1, axis2=2) for k in range(1, 6))
    mean = sum(estimate_log_det(layer, params, X, estimator="truncated", n_terms=5, v=np.ones_like(X) * v)
               for v in ([1.0, 1.0], [1.0, -1.0])) / 2
    assert np.max(np.abs(mean - series)) <= 1e-12


def test_probes_of_the_wrong_shape_raise():
    layer, params = strong_layer(0.9)
    with pytest.raises(ValueError, match="one probe per point"):
        estimate_log_det(layer, params, X, estimator="truncated", v=np.ones((2, 2)))

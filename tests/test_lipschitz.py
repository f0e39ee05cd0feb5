"""Spectral norm by power iteration, weight normalisation and the 1-Lipschitz activations
(tinyflow/lipschitz.py), each checked against numpy's SVD or autograd."""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import elementwise_grad, grad
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyflow.lipschitz import ACTIVATIONS, normalise, power_iteration, singular_vectors, spectral_norm

SHAPES = st.sampled_from([(1, 1), (2, 64), (64, 2), (64, 64), (3, 5), (8, 8)])


def weight(shape, seed, scale):
    """mlp_init's uniform weights plus scale * N(0, 1): the weights a trained layer might hold."""
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(shape[0])
    return rng.uniform(-bound, bound, shape) + scale * rng.standard_normal(shape)


@given(shape=SHAPES, seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.0, 2.0))
@settings(max_examples=30)
def test_singular_vectors_give_the_largest_singular_value_of_svd(shape, seed, scale):
    W = weight(shape, seed, scale)
    u, v = singular_vectors(W)
    sigma = np.linalg.svd(W, compute_uv=False)[0]
    assert abs(u @ W @ v - sigma) <= 1e-12 * sigma
    assert abs(np.linalg.norm(u) - 1) < 1e-14 and abs(np.linalg.norm(v) - 1) < 1e-14


@given(shape=SHAPES, seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=20)
def test_power_iteration_is_within_1e_6_of_svd_after_enough_steps(shape, seed):
    W = weight(shape, seed, 0.5)
    _, singular, Vt = np.linalg.svd(W)
    start = np.random.default_rng(seed).standard_normal(shape[1])
    # sigma's relative error is about tan^2(theta_0) (sigma_2 / sigma_1)^(4k), theta_0 the start's
    # angle to the top right singular vector: enough steps for 1e-7 (capped for a near-tie)
    ratio = singular[1] / singular[0] if len(singular) > 1 else 0.0
    tan2 = np.sum((Vt[1:] @ start) ** 2) / (Vt[0] @ start) ** 2
    steps = 5000 if ratio > 0.99 else int(np.ceil(np.log(1e-7 / max(tan2, 1)) / (4 * np.log(max(ratio, 1e-3))))) + 1
    sigma, _, _ = power_iteration(W, start, steps)
    assert abs(sigma - singular[0]) <= 1e-6 * singular[0]


def test_power_iteration_resumes_from_the_vector_it_returns():
    W = weight((64, 64), 3, 0.3)
    start = np.random.default_rng(0).standard_normal(64)
    _, _, halfway = power_iteration(W, start, 20)
    assert np.allclose(power_iteration(W, halfway, 20)[0], power_iteration(W, start, 40)[0], rtol=1e-14, atol=0)


def test_power_iteration_error_shrinks_with_steps():
    W = weight((64, 64), 1, 0.3)
    sigma = np.linalg.svd(W, compute_uv=False)[0]
    start = np.random.default_rng(0).standard_normal(64)
    errors = [sigma - power_iteration(W, start, k)[0] for k in (1, 10, 100)]
    assert errors[0] > errors[1] > errors[2] >= -1e-14 * sigma        # from below: |u^T W v| <= sigma


def test_singular_vectors_of_a_tie_still_give_sigma():
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))[0]      # every singular value 1
    u, v = singular_vectors(Q * 2.5)
    assert abs(u @ (Q * 2.5) @ v - 2.5) <= 1e-13


def test_spectral_norm_of_zero_is_zero():
    assert spectral_norm(np.zeros((3, 4))) == 0.0


@given(shape=SHAPES, seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=15)
def test_spectral_norm_gradient_matches_finite_differences(shape, seed):
    W = weight(shape, seed, 0.5)
    singular = np.linalg.svd(W, compute_uv=False)
    if len(singular) > 1 and singular[1] > 0.999 * singular[0]:
        return                                                      # no derivative at a tie
    direction = np.random.default_rng(seed).standard_normal(shape)
    h = 1e-6
    difference = (np.linalg.norm(W + h * direction, 2) - np.linalg.norm(W - h * direction, 2)) / (2 * h)
    assert abs(np.sum(grad(spectral_norm)(W) * direction) - difference) <= 1e-6 * max(1, abs(difference))


@given(seed=st.integers(0, 2 ** 32 - 1), c=st.floats(0.1, 0.999), scale=st.floats(0.0, 2.0))
@settings(max_examples=25)
def test_normalise_caps_the_spectral_norm_at_c(seed, c, scale):
    W = weight((8, 5), seed, scale)
    sigma = np.linalg.norm(W, 2)
    W_hat = normalise(W, c)
    assert np.linalg.norm(W_hat, 2) <= c * (1 + 1e-12)
    if sigma <= c:
        assert np.array_equal(W_hat, W)                             # already within: left alone
    else:
        assert abs(np.linalg.norm(W_hat, 2) - c) <= 1e-12


@pytest.mark.parametrize("beta", [0.01, 0.5, 1.0, 5.0, 100.0])
def test_lipswish_slope_is_within_one_and_nearly_reaches_it(beta):
    a = np.linspace(-60, 60, 400_001) / beta
    _, slope = ACTIVATIONS["lipswish"](a, beta)
    assert np.all(np.abs(slope) <= 1) and slope.max() > 0.9998     # 1.0998 / 1.1 = 0.99985
    assert slope.min() < -0.0907                                    # -0.0998 / 1.1: not monotone


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_slope_is_its_derivative(name):
    a = np.concatenate([np.linspace(-8, 8, 201), [-1e-3, 1e-3]])
    phi = ACTIVATIONS[name]
    derivative = elementwise_grad(lambda z: phi(z, 0.8)[0])(a)
    assert np.max(np.abs(phi(a, 0.8)[1] - derivative)) <= 1e-14


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_are_one_lipschitz(name):
    a = np.random.default_rng(0).uniform(-10, 10, (2, 100_000))
    values = ACTIVATIONS[name](a, anp.array(1.7))[0]
    assert np.all(np.abs(values[0] - values[1]) <= np.abs(a[0] - a[1]) * (1 + 1e-12))

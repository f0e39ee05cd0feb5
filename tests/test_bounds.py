"""bounds.py: the ELBO and the importance-weighted bound, on a linear-Gaussian model where
everything is known in closed form:

    p(z) = N(0, I_d),   p(x | z) = N(A z + c, sigma^2 I_m)
    p(x) = N(c, A A^T + sigma^2 I),   p(z | x) = N(V A^T (x - c) / sigma^2, V),  V = (I + A^T A / sigma^2)^-1

A has orthogonal columns, so V is diagonal and the true posterior is exactly an AmortisedAffine
layer with the data as its context: mu(x) = (x - c) A V / sigma^2 (linear in x), log sigma = log V / 2.
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
from tinyflow.amortised import AmortisedAffine, AmortisedPlanar
from tinyflow.bounds import elbo, iwae_bound, log_mean_exp, log_weights

LOG_2PI = np.log(2 * np.pi)
seeds = st.integers(0, 2 ** 32 - 1)
_scale = settings.default.max_examples / 25       # as in test_layers.py: HYPOTHESIS_PROFILE=dev runs 12x more


def examples(n):
    return settings(max_examples=round(n * _scale))


class LinearGaussian:
    """The model above, drawn from a seed: d latents, m >= d observed coordinates."""

    def __init__(self, seed, d=2, m=3):
        rng = np.random.default_rng(seed)
        Q = np.linalg.qr(rng.standard_normal((m, d)))[0]              # orthonormal columns
        self.A, self.c = Q * rng.uniform(0.5, 2.0, d), rng.standard_normal(m)
        self.sigma, self.d, self.m = rng.uniform(0.3, 1.5), d, m
        self.V = 1 / (1 + np.sum(self.A ** 2, axis=0) / self.sigma ** 2)        # diag of the posterior covariance
        self.x = self.sample_x(rng, 3)

    def sample_x(self, rng, n):
        z = rng.standard_normal((n, self.d))
        return z @ self.A.T + self.c + self.sigma * rng.standard_normal((n, self.m))

    def log_p_x(self, x):
        S = self.A @ self.A.T + self.sigma ** 2 * np.eye(self.m)
        r = x - self.c
        return -0.5 * (np.sum(r * np.linalg.solve(S, r.T).T, axis=1) + np.linalg.slogdet(S)[1] + self.m * LOG_2PI)

    def log_joint(self, x, A=None):
        """z (k, N, d) -> log p(x_i, z_ji) (k, N); A may be traced (a model parameter)."""
        A = self.A if A is None else A
        def log_joint(z):
            r = (x - self.c)[None] - anp.dot(z, A.T)
            return (-0.5 * anp.sum(z ** 2, axis=2) - 0.5 * self.d * LOG_2PI
                    - 0.5 * anp.sum(r ** 2, axis=2) / self.sigma ** 2 - self.m * (np.log(self.sigma) + 0.5 * LOG_2PI))
        return log_joint

    def posterior(self, rng):
        """(q, params): AmortisedAffine(m) with the data as context, set to p(z | x) exactly."""
        layer = AmortisedAffine(self.m)
        q = tf.Flow(tf.StandardNormal(self.d), [layer])
        params = q.init(rng)
        W = self.A * self.V / self.sigma ** 2
        s = 0.5 * np.log(self.V)
        params["layers"][0] = {"W_mu": W, "mu": -self.c @ W, "W_s": np.zeros((self.m, self.d)),
                               "s": layer.s_max * np.arctanh(s / layer.s_max)}
        return q, params

    def kl_from_prior(self, x):
        """KL(N(0, I) || p(z | x)) per point: the ELBO gap of q = the prior."""
        mean = (x - self.c) @ (self.A * self.V / self.sigma ** 2)
        return 0.5 * np.sum((1 + mean ** 2) / self.V - 1 + np.log(self.V), axis=1)


def prior_as_q(model, rng):
    """q(z | x) = N(0, I) for every x: an AmortisedAffine at init (the identity)."""
    q = tf.Flow(tf.StandardNormal(model.d), [AmortisedAffine(model.m)])
    return q, q.init(rng)


@given(seed=seeds, k=st.integers(1, 64), d=st.integers(1, 3))
@examples(25)
def test_bound_is_log_p_for_every_k_when_q_is_the_true_posterior(seed, k, d):
    model = LinearGaussian(seed, d=d, m=d + 1)
    rng = np.random.default_rng(seed)
    q, params = model.posterior(rng)
    eps = rng.standard_normal((k, len(model.x), d))
    log_w = log_weights(q, params, model.log_joint(model.x), eps, model.x)
    log_p = model.log_p_x(model.x)
    tol = 1e-12 * (1 + np.abs(log_p) + np.abs(eps).max() ** 2)      # rounding of the sums in log w
    assert np.all(np.abs(log_w - log_p) <= tol)                      # every single weight is p(x)
    assert np.all(np.abs(iwae_bound(log_w) - log_p) <= tol)
    assert np.all(np.abs(elbo(log_w) - log_p) <= tol)


@given(seed=seeds, n=st.integers(1, 5), scale=st.floats(0.1, 1e3))
@examples(25)
def test_bound_at_k_1_is_the_elbo(seed, n, scale):
    log_w = scale * np.random.default_rng(seed).standard_normal((1, n)) - scale
    assert np.array_equal(iwae_bound(log_w), elbo(log_w))             # m + log(exp(0)) = m exactly


@given(seed=seeds, scale=st.floats(0.01, 100.0))
@examples(25)
def test_bound_on_nested_groups_rises_with_k_draw_by_draw(seed, scale):
    # L_2k on a group of 2k draws >= the mean of L_k on its two halves (log of a mean >= mean of logs),
    # so with k = 1, 2, 4, ..., 64 taken from the same 64 draws the estimates rise with no noise at all
    log_w = scale * np.random.default_rng(seed).standard_normal((64, 3))
    per_k = [np.mean([iwae_bound(group) for group in np.split(log_w, 64 // k)], axis=0) for k in (1, 2, 4, 8, 16, 32, 64)]
    for smaller, larger in zip(per_k[:-1], per_k[1:]):
        assert np.all(larger >= smaller - 1e-12 * (1 + np.abs(smaller)))


def test_bound_rises_with_k_in_expectation_and_stays_below_log_p():
    model = LinearGaussian(seed=3, d=2, m=3)
    rng = np.random.default_rng(0)
    q, params = prior_as_q(model, rng)
    runs, x = 4000, model.x[:1]                       # one data point, 4000 independent estimates of L_k
    log_p = model.log_p_x(x)[0]
    means, ses = [], []
    for k in (1, 2, 4, 8, 16, 64):
        eps = rng.standard_normal((k, runs, model.d))
        bound = iwae_bound(log_weights(q, params, model.log_joint(np.repeat(x, runs, axis=0)), eps, x))
        means.append(bound.mean())
        ses.append(bound.std(ddof=1) / np.sqrt(runs))
    gap = log_p - np.array(means)
    print(f"log p(x) = {log_p:.4f}; log p(x) - L_k for k = 1, 2, 4, 8, 16, 64: {np.round(gap, 4)} "
          f"(se {np.round(ses, 4)})")
    rise = np.diff(means) / np.hypot(ses[:-1], ses[1:])              # each step in units of its noise
    print(f"rise per step / its se: {np.round(rise, 1)}")
    assert np.all(rise > 3)                                          # rising at every step, beyond the noise
    assert np.all(gap > -3 * np.array(ses))                          # and never above log p(x)


def test_elbo_is_log_p_minus_kl_to_the_true_posterior():
    model = LinearGaussian(seed=5, d=2, m=3)
    rng = np.random.default_rng(1)
    q, params = prior_as_q(model, rng)
    eps = rng.standard_normal((20000, len(model.x), model.d))
    log_w = log_weights(q, params, model.log_joint(model.x), eps, model.x)
    se = log_w.std(axis=0, ddof=1) / np.sqrt(len(log_w))
    expected = model.log_p_x(model.x) - model.kl_from_prior(model.x)
    assert np.all(np.abs(elbo(log_w) - expected) < 4 * se)


def test_log_weights_pair_each_draw_with_its_own_point():
    model = LinearGaussian(seed=7, d=2, m=3)
    rng = np.random.default_rng(2)
    q = tf.Flow(tf.StandardNormal(2), [AmortisedAffine(3), AmortisedPlanar(3)])
    theta, unflatten = flatten(q.init(rng))
    params = unflatten(theta + rng.standard_normal(theta.shape))      # every point its own q(z | x_i)
    eps = rng.standard_normal((4, 3, 2))
    log_w = log_weights(q, params, model.log_joint(model.x), eps, model.x)
    for j in range(4):
        for i in range(3):
            one = log_weights(q, params, model.log_joint(model.x[i:i + 1]), eps[j:j + 1, i:i + 1], model.x[i:i + 1])
            assert abs(log_w[j, i] - one[0, 0]) <= 1e-12 * (1 + abs(one[0, 0]))


def test_log_mean_exp_neither_underflows_nor_overflows():
    a = np.array([[-1000.0, 1000.0], [-1000.0 + np.log(3), 1000.0 + np.log(3)]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # an overflow warning fails the test
        result = log_mean_exp(a)
    assert np.allclose(result, [-1000 + np.log(2), 1000 + np.log(2)], rtol=0, atol=1e-12)   # log (1 + 3)/2
    with np.errstate(over="ignore", divide="ignore"):
        assert np.all(np.isinf(np.log(np.mean(np.exp(a), axis=0))))                          # the naive way


def test_log_mean_exp_of_all_minus_inf_is_minus_inf():
    with np.errstate(divide="ignore"):
        assert log_mean_exp(np.full((3, 1), -np.inf))[0] == -np.inf


def test_log_mean_exp_gradient_is_the_softmax():
    a = np.random.default_rng(3).standard_normal((5, 2)) * 10
    weights = np.exp(a - a.max(0)) / np.exp(a - a.max(0)).sum(0)
    assert np.allclose(grad(lambda a: anp.sum(log_mean_exp(a)))(a), weights, rtol=0, atol=1e-15)


def test_gradient_through_the_bound_matches_finite_differences():
    model = LinearGaussian(seed=11, d=2, m=2)
    rng = np.random.default_rng(4)
    q = tf.Flow(tf.StandardNormal(2), [AmortisedAffine(2), AmortisedPlanar(2)])
    theta0, unflatten = flatten({"q": q.init(rng), "A": model.A})
    theta0 = theta0 + 0.5 * rng.standard_normal(theta0.shape)         # q away from init, the model's A moved
    x, eps = model.x[:2], rng.standard_normal((3, 2, 2))

    def loss(theta):
        params = unflatten(theta)
        return -anp.mean(iwae_bound(log_weights(q, params["q"], model.log_joint(x, params["A"]), eps, x)))

    g = grad(loss)(theta0)
    h, steps = 1e-5, np.eye(len(theta0))
    fd = np.array([(loss(theta0 + h * e) - loss(theta0 - h * e)) / (2 * h) for e in steps])
    assert np.all(np.isfinite(g))
    assert np.max(np.abs(g - fd)) <= 1e-7 * max(1.0, np.abs(fd).max())


@pytest.mark.parametrize("log_w, error", [
    (np.zeros(3), ValueError), (np.zeros((2, 3, 1)), ValueError), (np.zeros((0, 3)), ValueError),
    ("log w", TypeError), (None, TypeError)])
def test_bounds_reject_log_weights_that_are_not_k_by_n(log_w, error):
    for bound in (elbo, iwae_bound):
        with pytest.raises(error, match="log_w"):
            bound(log_w)


def test_log_weights_reject_bad_inputs_with_clear_errors():
    model = LinearGaussian(seed=0)
    rng = np.random.default_rng(0)
    q, params = prior_as_q(model, rng)
    log_joint, x, eps = model.log_joint(model.x), model.x, rng.standard_normal((2, 3, 2))
    with pytest.raises(TypeError, match="q must be a flow"):
        log_weights(tf.StandardNormal(2), params, log_joint, eps, x)
    with pytest.raises(TypeError, match="log_joint must be a function"):
        log_weights(q, params, None, eps, x)
    with pytest.raises(ValueError, match=r"eps must have shape \(k, N, 2\)"):
        log_weights(q, params, log_joint, eps[0], x)
    with pytest.raises(ValueError, match="eps must be finite"):
        log_weights(q, params, log_joint, np.full((2, 3, 2), np.nan), x)
    with pytest.raises(ValueError, match="one row per data point"):
        log_weights(q, params, log_joint, eps, x[:2])
    with pytest.raises(ValueError, match=r"log_joint must return .* shape \(2, 3\)"):
        log_weights(q, params, lambda z: anp.sum(z, axis=2).T, eps, x)
    with pytest.raises(ValueError, match="this flow is conditional"):
        log_weights(q, params, log_joint, eps)

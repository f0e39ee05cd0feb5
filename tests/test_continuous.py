"""ContinuousFlow: the divergence against autograd's Jacobian, the primitive against the readable
expression, the density (normalised, agreeing with samples, converging to the solver map's own
log|det| at RK4's order), the round trip's order, Hutchinson's estimator, maximum likelihood through
the solver, and bad input.

"Perturbed" parameters: init (whose last layer is zero, so v = 0 and q = base) moved by
scale * N(0, I) on every entry. At scale 0.5 and hidden (16, 16) the flow moves N(0, I) a long
way, KL(q || base) = 0.99 nats for seed 0, while keeping its mass inside [-7, 7]^2.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian

import tinyflow as tf
from tinyflow.continuous import divergence_plain, _network
from tinyflow.field_backprop import _field, velocity_and_divergence
from tinyflow.leaves import flatten_params

SHAPES = [((16,), 2), ((16, 16), 2), ((8, 8, 8), 3), ((5,), 1)]      # (hidden, D): every depth the code branches on


def perturbed(flow, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    theta, unflatten = flatten_params(flow.init(rng))
    return unflatten(theta + scale * rng.standard_normal(theta.shape))


def flow_2d(num_steps=8, method="rk4", base=None):
    return tf.ContinuousFlow(base or tf.StandardNormal(2), hidden=(16, 16), num_steps=num_steps, method=method)


def grid(L, n):
    """Cell centres of an n x n grid on [-L, L]^2 and the cell area."""
    edges = np.linspace(-L, L, n + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    X, Y = np.meshgrid(centres, centres)
    return np.stack([X.ravel(), Y.ravel()], axis=1), (2 * L / n) ** 2


def weights_of(params):
    return [(layer["W"], layer["b"]) for layer in params["field"]]


@pytest.mark.parametrize("hidden, dim", SHAPES)
def test_divergence_is_the_trace_of_autograds_jacobian(hidden, dim):
    flow = tf.ContinuousFlow(tf.StandardNormal(dim), hidden=hidden)
    params = perturbed(flow, seed=dim)
    x, t = np.random.default_rng(1).standard_normal((6, dim)), 0.3
    traces = [np.trace(jacobian(lambda x_n: flow.velocity(params, x_n[None], t)[0])(x_n)) for x_n in x]
    assert np.abs(flow.divergence(params, x, t) - traces).max() < 1e-10


@pytest.mark.parametrize("hidden, dim", SHAPES)
@pytest.mark.parametrize("hutchinson", [False, True])
def test_primitive_matches_the_readable_expression_and_its_gradients(hidden, dim, hutchinson):
    flow = tf.ContinuousFlow(tf.StandardNormal(dim), hidden=hidden)
    rng = np.random.default_rng(2)
    theta, unflatten = flatten_params(perturbed(flow, seed=3))
    x, t = rng.standard_normal((7, dim)), rng.uniform(size=7)
    eps = rng.choice([-1.0, 1.0], (7, dim)) if hutchinson else None
    c_v, c_div = rng.standard_normal((7, dim)), rng.standard_normal(7)      # a random cotangent

    def plain(theta, x):
        weights = weights_of(unflatten(theta))
        hidden_values, v = _network(weights, x, t)
        return anp.sum(c_v * v) + anp.sum(c_div * divergence_plain(weights, hidden_values, eps))

    def primitive(theta, x):
        v, div = velocity_and_divergence(weights_of(unflatten(theta)), x, t, eps)
        return anp.sum(c_v * v) + anp.sum(c_div * div)
    assert primitive(theta, x) == pytest.approx(plain(theta, x), abs=1e-12)
    for argnum in (0, 1):
        assert np.abs(grad(primitive, argnum)(theta, x) - grad(plain, argnum)(theta, x)).max() < 1e-12



@pytest.mark.parametrize("hidden, dim", SHAPES)
@pytest.mark.parametrize("hutchinson", [False, True])
def test_evaluation_without_autograd_gives_the_primitives_numbers_bit_for_bit(hidden, dim, hutchinson):
    # outside autograd velocity_and_divergence skips the primitive's kept columns, not its arithmetic
    flow = tf.ContinuousFlow(tf.StandardNormal(dim), hidden=hidden)
    rng = np.random.default_rng(5)
    weights = weights_of(perturbed(flow, seed=6))
    x, t = rng.standard_normal((9, dim)), rng.uniform(size=9)
    eps = rng.choice([-1.0, 1.0], (9, dim)) if hutchinson else None
    out = _field(x, t, eps, *[a for layer in weights for a in layer])
    v, div = velocity_and_divergence(weights, x, t, eps)
    assert np.array_equal(v, out[:, :dim]) and np.array_equal(div, out[:, dim])

def test_primitive_gradient_matches_finite_differences():
    flow = flow_2d()
    rng = np.random.default_rng(4)
    theta, unflatten = flatten_params(perturbed(flow, seed=5))
    x = rng.standard_normal((5, 2))
    c_v, c_div = rng.standard_normal((5, 2)), rng.standard_normal(5)

    def f(theta):
        v, div = velocity_and_divergence(weights_of(unflatten(theta)), x, 0.7)
        return anp.sum(c_v * v) + anp.sum(c_div * div)
    direction = rng.standard_normal(theta.shape)
    direction /= np.linalg.norm(direction)
    h = 1e-5
    numerical = (f(theta + h * direction) - f(theta - h * direction)) / (2 * h)
    assert grad(f)(theta) @ direction == pytest.approx(numerical, abs=1e-6)


def test_zero_field_at_init_makes_the_flow_the_base():
    flow = flow_2d()
    params = flow.init(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 2))
    assert np.array_equal(flow.log_prob(params, x), tf.StandardNormal(2).log_prob({}, x))
    assert np.array_equal(flow.sample(params, np.random.default_rng(2), 5),
                          tf.StandardNormal(2).sample({}, np.random.default_rng(2), 5))


def test_density_integrates_to_one():
    # measured: 1 - 3.5e-6 at 8 RK4 steps (the grid adds < 1e-8); the target is 1e-3
    flow = flow_2d(num_steps=8)
    points, area = grid(7.0, 200)
    mass = np.exp(flow.log_prob(perturbed(flow, seed=0), points)).sum() * area
    assert abs(mass - 1) < 1e-4


def test_mass_in_a_box_from_samples_matches_the_density():
    flow = flow_2d(num_steps=8)
    params = perturbed(flow, seed=0)
    x = flow.sample(params, np.random.default_rng(6), 20_000)
    lower, upper = np.array([-0.5, -1.0]), np.array([1.5, 0.5])
    counted = np.mean(np.all((x > lower) & (x < upper), axis=1))
    edges = [np.linspace(lower[i], upper[i], 81) for i in range(2)]
    X, Y = np.meshgrid((edges[0][1:] + edges[0][:-1]) / 2, (edges[1][1:] + edges[1][:-1]) / 2)
    integral = np.exp(flow.log_prob(params, np.stack([X.ravel(), Y.ravel()], 1))).sum() * np.prod((upper - lower) / 80)
    se = np.sqrt(integral * (1 - integral) / len(x))                   # binomial standard error of the count
    assert 0.1 < integral < 0.9 and abs(counted - integral) < 4 * se


def test_log_prob_of_a_sample_matches_sample_and_log_prob():
    # two solves, forward and backward, each off the exact ODE by O(h^4): measured 2.7e-5 at 8 steps
    flow = flow_2d(num_steps=8)
    params = perturbed(flow, seed=0)
    x, log_q = flow.sample_and_log_prob(params, np.random.default_rng(7), 50)
    assert np.abs(flow.log_prob(params, x) - log_q).max() < 1e-4
    assert np.array_equal(x, flow.sample(params, np.random.default_rng(7), 50))


def round_trip_errors(method, steps):
    """max |z - inverse(forward(z))| and max |log_det forward + log_det inverse| per num_steps."""
    errors = []
    for num_steps in steps:
        flow = flow_2d(num_steps, method)
        params = perturbed(flow, seed=0)
        z = np.random.default_rng(8).standard_normal((20, 2))
        x, log_det = flow.forward(params, z)
        z_back, log_det_back = flow.inverse(params, x)
        errors.append((np.abs(z_back - z).max(), np.abs(log_det + log_det_back).max()))
    return np.array(errors)


@pytest.mark.parametrize("method, order", [("euler", 1), ("rk4", 5)])
def test_round_trip_error_falls_at_the_solvers_round_trip_order(method, order):
    # a round trip cancels the leading error of an even-order method (test_ode.py): RK4's falls as h^5.
    # measured max |z - z_back|: 3.4e-4, 1.1e-5, 3.4e-7, 1.1e-8, 3.3e-10 at 4, 8, 16, 32, 64 RK4 steps
    steps = (8, 16, 32) if method == "rk4" else (64, 128, 256)
    errors = round_trip_errors(method, steps)
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - order) < 0.35), orders


def test_log_det_converges_to_the_solver_maps_log_det_at_rk4s_order():
    # log|det dx/dz| of the computed map (autograd's Jacobian of the whole solve) and the integrated
    # divergence are two approximations of the exact flow's log|det|, each off by O(h^4).
    # measured: 2.3e-4, 1.4e-5, 8.8e-7, 5.4e-8 at 4, 8, 16, 32 steps
    z = np.random.default_rng(9).standard_normal((4, 2))
    gaps = []
    for num_steps in (4, 8, 16):
        flow = flow_2d(num_steps)
        params = perturbed(flow, seed=0)
        jacobians = [jacobian(lambda z_n: flow.forward(params, z_n[None])[0][0])(z_n) for z_n in z]
        gaps.append(np.abs(flow.forward(params, z)[1] - np.linalg.slogdet(np.array(jacobians))[1]).max())
    assert np.all(np.abs(np.log2(np.array(gaps[:-1]) / gaps[1:]) - 4) < 0.5), gaps


def test_hutchinson_divergence_is_unbiased():
    flow = flow_2d()
    params = perturbed(flow, seed=0)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((5, 2))
    estimates = np.array([flow.divergence(params, x, 0.4, rng.choice([-1.0, 1.0], (5, 2))) for _ in range(4000)])
    se = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - flow.divergence(params, x, 0.4)) < 4 * se)
    assert np.all(se > 0)                                              # the estimator does vary


def test_hutchinson_log_prob_is_unbiased():
    flow = flow_2d()
    params = perturbed(flow, seed=0)
    rng = np.random.default_rng(11)
    x = flow.sample(params, rng, 3)
    x_many = np.repeat(x, 2000, axis=0)                                # 2000 probes per point, one solve
    estimates = flow.log_prob(params, x_many, rng.standard_normal(x_many.shape)).reshape(3, 2000)
    se = estimates.std(axis=1, ddof=1) / np.sqrt(2000)
    assert np.all(np.abs(estimates.mean(axis=1) - flow.log_prob(params, x)) < 4 * se)


def test_maximum_likelihood_gradient_through_the_solver_matches_finite_differences():
    flow = flow_2d(num_steps=4, base=tf.DiagNormal(2))
    params = perturbed(flow, seed=0)
    x = np.random.default_rng(12).standard_normal((10, 2))
    loss = tf.forward_kl(flow)
    theta, unflatten = flatten_params(params)
    g = flatten_params(grad(loss)(params, x))[0]
    h = 1e-5
    for k, direction in enumerate(np.random.default_rng(13).standard_normal((3, theta.size))):
        direction /= np.linalg.norm(direction)                          # a step of h, not h sqrt(#params)
        numerical = (loss(unflatten(theta + h * direction), x) - loss(unflatten(theta - h * direction), x)) / (2 * h)
        assert g @ direction == pytest.approx(numerical, abs=1e-6), k


def test_velocity_takes_one_time_or_one_per_point():
    flow = flow_2d()
    params = perturbed(flow, seed=0)
    x = np.random.default_rng(14).standard_normal((4, 2))
    per_point = flow.velocity(params, x, np.full(4, 0.25))
    assert np.array_equal(per_point, flow.velocity(params, x, 0.25))
    assert not np.allclose(per_point, flow.velocity(params, x, 0.75))


def test_trace_runs_from_the_points_to_the_solution():
    flow = flow_2d(num_steps=5)
    params = perturbed(flow, seed=0)
    z = np.random.default_rng(15).standard_normal((6, 2))
    path = flow.trace(params, z)
    assert len(path) == 6 and np.array_equal(path[0], z)
    assert np.abs(path[-1] - flow.forward(params, z)[0]).max() < 1e-12
    back = flow.trace(params, path[-1], inverse=True)
    assert np.abs(back[-1] - flow.inverse(params, path[-1])[0]).max() < 1e-12


def test_held_out_report_works_unchanged():
    flow = flow_2d(num_steps=2)
    params = flow.init(np.random.default_rng(0))
    report = tf.held_out_report(flow, params, tf.ShiftedGaussian(), np.random.default_rng(1), 500)
    assert np.isfinite(report["kl"]) and report["kl"] > 0


@pytest.mark.parametrize("build, error, match", [
    (lambda: tf.ContinuousFlow(2), TypeError, "base must be a distribution"),
    (lambda: tf.ContinuousFlow(tf.StandardNormal(2), method="rk45"), ValueError, "method must be one of"),
    (lambda: tf.ContinuousFlow(tf.StandardNormal(2), hidden=()), ValueError, "hidden must be"),
    (lambda: tf.ContinuousFlow(tf.StandardNormal(2), num_steps=0), ValueError, "num_steps must be >= 1"),
])
def test_bad_hyperparameters_raise_an_error_naming_the_expectation(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("call, error, match", [
    (lambda f, p: f.log_prob(p, np.zeros((3, 3))), ValueError, r"x must have 2 columns"),
    (lambda f, p: f.log_prob(p, np.zeros(2)), ValueError, r"shape \(N, D\)"),
    (lambda f, p: f.log_prob(p, np.zeros((3, 2)), np.zeros((4, 2))), ValueError, "one probe per point"),
    (lambda f, p: f.log_prob(p["field"], np.zeros((3, 2))), TypeError, "params must be the dict"),
    (lambda f, p: f.log_prob({"base": {}, "field": p["field"][:2]}, np.zeros((3, 2))), ValueError, "3 layers"),
    (lambda f, p: f.sample(p, 0, 3), TypeError, "rng must be a numpy.random.Generator"),
])
def test_bad_input_raises_an_error_naming_the_expectation(call, error, match):
    flow = flow_2d()
    with pytest.raises(error, match=match):
        call(flow, flow.init(np.random.default_rng(0)))

"""amortised.py: AmortisedAffine (q_0(z | x) = N(mu(h), diag sigma(h)^2) as a flow's first layer)
and AmortisedPlanar (a planar step whose u, w, b come from the context h). Every point has its
own context row, so each property is checked point by point, with parameters moved away from
init (at init the heads are zero and every point would share one layer).

"literal" params make the context the raw planar parameters themselves, h = [u, w, b] (C = 2D + 1,
R&M's encoder writing u, w, b directly): then a test can put each point where it wants it.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from strategies_core import integrate_2d, midpoints
from tinyflow.amortised import AmortisedAffine, AmortisedPlanar, planar_rows_plain, reparameterise_rows
from tinyflow.affine import affine
from tinyflow.amortised_backprop import planar_rows
from tinyflow.check import numerical_jacobian
from tinyflow.planar import TINY, softplus
from tinyflow.strategies import both_signs, perturb_params
from tinyflow.train import flat_loss_and_grad

EPS = np.finfo(float).eps
LOG_2PI = np.log(2 * np.pi)
C = 3
LAYERS = {"AmortisedAffine": lambda: AmortisedAffine(C), "AmortisedPlanar": lambda: AmortisedPlanar(C)}
seeds = st.integers(0, 2 ** 32 - 1)
_scale = settings.default.max_examples / 25       # as in test_layers.py: HYPOTHESIS_PROFILE=dev runs 12x more


def examples(n):
    return settings(max_examples=round(n * _scale))


def case(name, dim, seed, n=4, size=1.0):
    """(layer, params moved from init, z (n, dim) with both signs, context (n, C), one row per point)."""
    layer = LAYERS[name]()
    rng = np.random.default_rng(seed)
    z = both_signs(rng.uniform(-3, 3, (n, dim)))
    return layer, perturb_params(layer, dim, seed, size), z, rng.standard_normal((n, C))


def literal(dim):
    """AmortisedPlanar(2D + 1) params with u(h), w(h), b(h) = h[:D], h[D:2D], h[2D]."""
    I = np.eye(2 * dim + 1)
    return {"W_u": I[:, :dim], "u": np.zeros(dim), "W_w": I[:, dim:2 * dim], "w": np.zeros(dim),
            "W_b": I[:, 2 * dim], "b": np.array(0.0)}


def per_point_blocks(f, z):
    """autograd's Jacobian of a batch map f (N, D) -> (N, D), as (N, D, N, D)."""
    return jacobian(f)(z)


layer_names = pytest.mark.parametrize("name", sorted(LAYERS))
drawn = given(dim=st.integers(1, 4), seed=seeds)


@layer_names
@drawn
@examples(15)
def test_log_det_matches_autograd_jacobian_per_point(name, dim, seed):
    layer, params, z, h = case(name, dim, seed)
    J = per_point_blocks(lambda z: layer.forward(params, z, h)[0], z)
    blocks = np.stack([J[i, :, i, :] for i in range(len(z))])
    assert np.allclose(layer.forward(params, z, h)[1], np.linalg.slogdet(blocks)[1], rtol=0, atol=1e-10)


@layer_names
@drawn
@examples(15)
def test_each_point_depends_only_on_its_own_z(name, dim, seed):
    layer, params, z, h = case(name, dim, seed)
    J = per_point_blocks(lambda z: layer.forward(params, z, h)[0], z)
    for i in range(len(z)):
        J[i, :, i, :] = 0
    assert np.all(J == 0)


@layer_names
@drawn
@examples(15)
def test_log_det_matches_finite_differences_per_point(name, dim, seed):
    layer, params, z, h = case(name, dim, seed)
    # the map is row-wise, so moving coordinate j of every row at once gives each row its own column j.
    # Compared as |det J|, the units central differences are accurate in (~1e-10): where a planar
    # step nearly folds, det J is 0.006 and log det J inherits a relative error of 1e-7
    J = numerical_jacobian(lambda z: layer.forward(params, z, h)[0], z)
    assert np.allclose(np.exp(layer.forward(params, z, h)[1]), np.abs(np.linalg.det(J)), rtol=1e-7, atol=1e-8)


@layer_names
@drawn
@examples(15)
def test_inverse_undoes_forward(name, dim, seed):
    layer, params, z, h = case(name, dim, seed)
    # z -> y -> z loses what f's conditioning takes near a = 0 when 1 + c is small (planar.py's
    # table: 1e-10 at 1 + c = 1e-6), and perturbed heads put some points there; y -> z -> y does not
    y = layer.forward(params, z, h)[0]
    assert np.allclose(layer.inverse(params, y, h)[0], z, rtol=0, atol=1e-8)
    assert np.allclose(layer.forward(params, layer.inverse(params, z, h)[0], h)[0], z, rtol=0, atol=1e-12)


@layer_names
@drawn
@examples(15)
def test_inverse_log_det_is_minus_forward(name, dim, seed):
    layer, params, z, h = case(name, dim, seed)
    y, log_det = layer.forward(params, z, h)          # 1e-8: the same conditioning as the round trip
    assert np.allclose(layer.inverse(params, y, h)[1], -log_det, rtol=0, atol=1e-8)


@given(dim=st.integers(1, 4), seed=seeds, scale=st.floats(1e-3, 1e3))
@examples(50)
def test_constraint_w_u_hat_above_minus_one_holds_for_any_raw_u_w(dim, seed, scale):
    rng = np.random.default_rng(seed)
    u, w = scale * rng.standard_normal((6, dim)), scale * rng.standard_normal((6, dim))
    u_hat, one_plus_c = reparameterise_rows(u, w)
    wu = np.sum(w * u, axis=1)
    assert np.all(one_plus_c > 0)                                   # c > -1 in every row, even where softplus underflows
    assert np.allclose(one_plus_c, softplus(wu) + TINY, rtol=4 * EPS, atol=0)
    assert np.all(np.abs(np.sum(w * u_hat, axis=1) - (one_plus_c - 1))
                  <= 8 * EPS * np.sum(np.abs(w) * (np.abs(u) + np.abs(u_hat)), axis=1))


@given(dim=st.integers(1, 4), seed=seeds)
@examples(15)
def test_each_point_is_chapter_9s_planar_with_its_own_u_w_b(dim, seed):
    layer, params, z, h = case("AmortisedPlanar", dim, seed)
    y, log_det = layer.forward(params, z, h)
    u, w, b = layer.u_w_b(params, h)
    for i in range(len(z)):
        y_i, log_det_i = tf.Planar().forward({"u": u[i], "w": w[i], "b": b[i]}, z[i:i + 1])
        assert np.allclose(y[i], y_i[0], rtol=0, atol=1e-13) and abs(log_det[i] - log_det_i[0]) <= 1e-13


def test_at_init_every_context_gets_the_same_planar_step():
    layer = AmortisedPlanar(C)
    rng = np.random.default_rng(0)
    params = layer.init(rng, 3)
    z, h = rng.standard_normal((5, 3)), 10 * rng.standard_normal((5, C))
    expected = tf.Planar().forward({"u": params["u"], "w": params["w"], "b": params["b"]}, z)
    assert all(np.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(layer.forward(params, z, h), expected))


def test_at_init_the_gaussian_layer_is_the_identity():
    layer = AmortisedAffine(C)
    rng = np.random.default_rng(0)
    eps, h = rng.standard_normal((5, 2)), 10 * rng.standard_normal((5, C))
    z, log_det = layer.forward(layer.init(rng, 2), eps, h)
    assert np.array_equal(z, eps) and np.array_equal(log_det, np.zeros(5))     # q_0 = the prior N(0, I)


@pytest.mark.parametrize("limit", [1e-2, 1e-5, 1e-8])
def test_inverse_finds_each_points_own_root_near_the_limit(limit):
    # rows at 1 + c = limit, 1, and 100: one solve, each point with its own c and b
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2))
    u = rng.standard_normal((3, 2))
    wu = np.log(np.expm1(np.array([limit, 1.0, 100.0])))
    u += ((wu - np.sum(w * u, 1)) / np.sum(w * w, 1))[:, None] * w
    h = np.concatenate([u, w, rng.uniform(-2, 2, (3, 1))], axis=1)
    layer, params = AmortisedPlanar(5), literal(2)
    assert np.allclose(layer.u_hat(params, h)[1], [limit, 1.0, 100.0], rtol=1e-9)
    y = 3 * rng.standard_normal((3, 2))
    z = layer.inverse(params, y, h)[0]
    # exact to rounding, which scales with |u_hat| (88 in the 1 + c = 100 row); a solve that mixed
    # up the rows' c and b would be off by O(1)
    u_hat = layer.u_hat(params, h)[0]
    assert np.all(np.abs(layer.forward(params, z, h)[0] - y).max(1) <= 1e-12 * (1 + np.abs(u_hat).max(1)))


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@layer_names
def test_gradients_match_finite_differences(name, direction):
    # w.r.t. every head and the context: the encoder learns through h
    layer, params, z, h = case(name, 2, seed=3)
    theta0, unflatten = flatten({"layer": params, "h": h})
    weights = np.random.default_rng(4).standard_normal(z.shape)

    def loss(theta):
        p = unflatten(theta)
        y, log_det = getattr(layer, direction)(p["layer"], z, p["h"])
        return anp.sum(weights * y) + anp.sum(log_det ** 2)

    g = grad(loss)(theta0)
    step = 1e-6
    fd = np.array([(loss(theta0 + step * e) - loss(theta0 - step * e)) / (2 * step) for e in np.eye(len(theta0))])
    assert np.max(np.abs(g - fd)) <= 1e-6 * max(1.0, np.abs(fd).max())


# The planar step as one autograd primitive (amortised_backprop.planar_rows) against the readable
# expression (planar_rows_plain): the same values and gradients w.r.t. z, u, w, b to rounding, with
# every row its own distance from the limit (w^T u from -40, 1 + c = 4e-18, to 1e4), half the
# rows on the hyperplane a = 0, and tanh saturated where b or z is large.
PRIMITIVE_TOL = 1e-12


def rows_case(seed, dim, b_max, z_scale, n=8):
    """(z, u, w, b), one row per point, with drawn w^T u per row (near the limit in some rows)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0, (n, 1))
    u = rng.standard_normal((n, dim))
    wu = np.where(rng.random(n) < 0.5, rng.uniform(-40, 10, n),
                  rng.choice([np.log(np.expm1(1e-8)), -40.0, 1e4], n))
    u += ((wu - np.sum(w * u, 1)) / np.sum(w * w, 1))[:, None] * w
    b, z = rng.uniform(-b_max, b_max, n), rng.uniform(-5, 5, (n, dim))
    z[n // 2:] -= ((np.sum(z * w, 1) + b) / np.sum(w * w, 1))[n // 2:, None] * w[n // 2:]    # onto a = 0
    return z * z_scale, u, w, b


def weighted_outputs(f, seed, shape):
    """args -> sum(gy * y) + sum(gl * log_det) for random cotangents: its gradient is the VJP."""
    rng = np.random.default_rng(seed + 7)
    gy, gl = rng.standard_normal(shape), rng.standard_normal(shape[0])
    return lambda *args: anp.sum(gy * f(*args)[0]) + anp.sum(gl * f(*args)[1])


def relative(a, b):
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


rows_cases = given(seed=seeds, dim=st.integers(1, 3), b_max=st.sampled_from([3.0, 30.0]),
                   z_scale=st.sampled_from([1.0, 20.0]))


@rows_cases
@examples(30)
def test_primitive_computes_the_readable_forward(seed, dim, b_max, z_scale):
    args = rows_case(seed, dim, b_max, z_scale)
    for fast, plain in zip(planar_rows(*args), planar_rows_plain(*args)):
        assert relative(fast, plain) <= PRIMITIVE_TOL


@rows_cases
@examples(30)
def test_primitive_gradients_match_autograd_of_the_readable_forward(seed, dim, b_max, z_scale):
    args = rows_case(seed, dim, b_max, z_scale)
    fast, plain = (weighted_outputs(f, seed, args[0].shape) for f in (planar_rows, planar_rows_plain))
    for argnum, arg in enumerate(args):
        got, want = grad(fast, argnum)(*args), grad(plain, argnum)(*args)
        assert np.shape(got) == np.shape(arg) and relative(got, want) <= PRIMITIVE_TOL, f"argument {argnum}"


def test_forward_records_one_node_per_step():
    """The primitive and one read of each output (3 nodes), where the readable expression records
    over 15, counted as chapter 8 counts them (the other 4: the input, two sums and their addition)."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort
    rng = np.random.default_rng(0)
    u, w, b = rng.standard_normal((4, 2)), rng.standard_normal((4, 2)), rng.standard_normal(4)

    def nodes(forward):
        def total(z):
            y, log_det = forward(z, u, w, b)
            return anp.sum(y) + anp.sum(log_det)
        _, end = trace(VJPNode.new_root(), total, rng.standard_normal((4, 2)))
        return sum(1 for _ in toposort(end)) - 4
    assert nodes(planar_rows) == 3 and nodes(planar_rows_plain) >= 15



# The layers' forward passes as one node each (amortised_backprop.amortised_planar and
# amortised_gaussian) against the chains they fuse: the heads (u_w_b, mu_s) and planar_rows or
# affine. Bit for bit, gradients too, through a flow of several layers sharing one context: the
# same float operations in the same order, so no chapter's number moves.
class UnfusedPlanar(AmortisedPlanar):
    def forward(self, params, z, context=None):
        return planar_rows(z, *self.u_w_b(params, context))


class UnfusedAffine(AmortisedAffine):
    def forward(self, params, eps, context=None):
        mu, s = self.mu_s(params, context)
        return affine(eps, s, mu), anp.sum(s, axis=1)


@given(seed=seeds, dim=st.integers(1, 3), steps=st.integers(0, 3))
@examples(20)
def test_fused_layers_give_the_unfused_chain_bit_for_bit(seed, dim, steps):
    rng = np.random.default_rng(seed)
    flows = [tf.Flow(tf.StandardNormal(dim), [planar(C) for _ in range(steps)] + [gaussian(C)])
             for planar, gaussian in [(AmortisedPlanar, AmortisedAffine), (UnfusedPlanar, UnfusedAffine)]]
    theta0, unflatten = flatten(flows[0].init(rng))
    params = {"q": unflatten(theta0 + 0.5 * rng.standard_normal(theta0.shape)),
              "W": rng.standard_normal((C, C)), "b": rng.standard_normal(C)}
    x, eps, weights = rng.standard_normal((6, C)), rng.standard_normal((6, dim)), rng.standard_normal((6, dim))

    def loss(flow):
        def total(p, batch):                  # h = tanh(x W + b): one context for every layer, as an encoder's
            z, log_q = flow.sample_from_noise(p["q"], eps, context=tf.dense_tanh(x, p["W"], p["b"]))
            return anp.sum(weights * z) + anp.sum(log_q ** 2)
        theta, _, loss_and_grad = flat_loss_and_grad(total, params)     # as fit differentiates
        return loss_and_grad(theta, None)
    (fused, g_fused), (plain, g_plain) = loss(flows[0]), loss(flows[1])
    assert fused == plain and np.array_equal(g_fused, g_plain)
    for fast, readable in zip(flows[0].sample_from_noise(params["q"], eps, context=x),
                              flows[1].sample_from_noise(params["q"], eps, context=x)):
        assert np.array_equal(fast, readable)                        # plain params: no autograd

def gaussian_case(seed, dim=2):
    layer = AmortisedAffine(C)
    q = tf.Flow(tf.StandardNormal(dim), [layer])
    params = q.init(np.random.default_rng(seed))
    params["layers"][0] = perturb_params(layer, dim, seed, 0.7)
    return layer, q, params


def mu_sigma(layer, p, h):
    """N(mu(h), diag sigma(h)^2) from the heads, written directly: the layer's stated Gaussian."""
    return h @ p["W_mu"] + p["mu"], np.exp(layer.s_max * np.tanh((h @ p["W_s"] + p["s"]) / layer.s_max))


@given(seed=seeds)
@examples(15)
def test_gaussian_layer_density_is_the_closed_form_gaussian(seed):
    layer, q, params = gaussian_case(seed)
    rng = np.random.default_rng(seed)
    z, h = 2 * rng.standard_normal((6, 2)), rng.standard_normal((6, C))
    mu, sigma = mu_sigma(layer, params["layers"][0], h)
    closed = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI, axis=1)
    assert np.allclose(q.log_prob(params, z, h), closed, rtol=1e-13, atol=1e-12)   # -2450 at a small sigma


def test_gaussian_layer_samples_have_the_stated_mean_and_sd():
    layer, q, params = gaussian_case(seed=5)
    rng = np.random.default_rng(6)
    n = 20000
    for h in rng.standard_normal((3, C)):                            # three data points, three Gaussians
        z = q.sample(params, rng, n, context=h)
        mu, sigma = mu_sigma(layer, params["layers"][0], h[None])
        assert np.all(np.abs(z.mean(0) - mu[0]) < 4 * sigma[0] / np.sqrt(n))
        assert np.all(np.abs(z.std(0, ddof=1) - sigma[0]) < 4 * sigma[0] / np.sqrt(2 * n))


@pytest.mark.parametrize("dim", [1, 2])
def test_amortised_posterior_integrates_to_one_for_each_context(dim):
    q = tf.Flow(tf.StandardNormal(dim), [AmortisedAffine(C), AmortisedPlanar(C), AmortisedPlanar(C)])
    theta, unflatten = flatten(q.init(np.random.default_rng(7)))
    params = unflatten(theta + 0.5 * np.random.default_rng(8).standard_normal(theta.shape))
    for h in np.random.default_rng(9).standard_normal((2, C)):
        log_q = lambda z: q.log_prob(params, z, context=h)
        if dim == 1:
            cells, width = midpoints(-25, 25, 20000)
            mass = np.sum(np.exp(log_q(cells[:, None]))) * width
        else:
            mass = integrate_2d(log_q, (-25, -25), (25, 25), 1000)      # a planar step with 1 + c = 0.18 folds sharply
        assert abs(mass - 1) < 1e-6


STACKS = {
    "Gaussian + 2 planar": lambda: [AmortisedAffine(C), AmortisedPlanar(C), AmortisedPlanar(C)],
    "Gaussian + IAF": lambda: [AmortisedAffine(C), tf.AffineAutoregressive((8,), context_dim=C), tf.Reverse(),
                               tf.AffineAutoregressive((8,), context_dim=C)],
    "Gaussian + planar + IAF": lambda: [AmortisedAffine(C), AmortisedPlanar(C),
                                        tf.AffineAutoregressive((8,), context_dim=C)],
}


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_one_pass_log_q_matches_the_density_at_the_samples(stack):
    # what a VAE runs (sample_from_noise: forward only) against log_prob (the inverses)
    q = tf.Flow(tf.StandardNormal(3), STACKS[stack]())
    rng = np.random.default_rng(10)
    theta, unflatten = flatten(q.init(rng))
    params = unflatten(theta + 0.5 * rng.standard_normal(theta.shape))
    h = rng.standard_normal((8, C))
    z, log_q = q.sample_and_log_prob(params, rng, 8, context=h)
    assert q.context_dim == C
    assert np.allclose(log_q, q.log_prob(params, z, context=h), rtol=0, atol=1e-10)


@pytest.mark.parametrize("build, error, match", [
    (lambda: AmortisedPlanar(0), ValueError, "context_dim must be >= 1"),
    (lambda: AmortisedPlanar(2.5), TypeError, "context_dim must be an int"),
    (lambda: AmortisedAffine(None), TypeError, "context_dim must be an int"),
    (lambda: AmortisedAffine(2, s_max=-1.0), ValueError, "s_max must be positive"),
])
def test_bad_hyperparameters_raise_clear_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


@layer_names
def test_bad_inputs_raise_clear_errors(name):
    layer, params, z, h = case(name, 2, seed=0)
    for method in (layer.forward, layer.inverse):
        with pytest.raises(ValueError, match=f"built with context_dim={C}"):
            method(params, z)
        with pytest.raises(ValueError, match=f"context must have {C} columns"):
            method(params, z, h[:, :2])
        with pytest.raises(ValueError, match="one row per point"):
            method(params, z, h[:2])
        with pytest.raises(ValueError, match="must have 2 columns"):
            method(params, np.ones((4, 3)), h)

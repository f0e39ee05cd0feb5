"""Conditional flows q(x | c): what the context does and what it must not do.

The shared layer tests (test_layers.py) already run every conditional layer at a fixed context,
a new one each draw (strategies_core.GivenContext): round trips, log-dets against autograd and
finite differences, and the coupling and MADE structure in x. Here: the context really changes
the map, it never breaks the autoregressive order in x, each q(. | c) is a normalised density that
its samples follow, a single context row means the same as that row repeated, and every way of
getting the context wrong is an error that says which.
"""
import numpy as np
import pytest
from autograd import grad

import tinyflow as tf
from strategies_core import CHI2_64_BOUND, HIDDEN, histogram_chi2, integrate_2d, midpoints
from tinyflow.strategies import perturb_params

C = 2

CONDITIONAL = {
    "AffineCoupling": (lambda: tf.AffineCoupling([1, 0, 1], HIDDEN, context_dim=C), 3),
    "SplineCoupling": (lambda: tf.SplineCoupling([1, 0, 1], HIDDEN, num_bins=4, bound=2.0, context_dim=C), 3),
    "AffineAutoregressive": (lambda: tf.AffineAutoregressive(HIDDEN, context_dim=C), 3),
    "SplineAutoregressive": (lambda: tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=C), 3),
    "AffineAutoregressive-D1": (lambda: tf.AffineAutoregressive(HIDDEN, context_dim=C), 1),
    "SplineAutoregressive-D1": (lambda: tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=C), 1),
}
AUTOREGRESSIVE = [name for name in CONDITIONAL if "Autoregressive" in name and not name.endswith("D1")]


def drawn(name, seed, scale=0.8):
    """A conditional layer with parameters moved away from init, points x and contexts c."""
    factory, dim = CONDITIONAL[name]
    layer = factory()
    rng = np.random.default_rng(seed)
    # inside the splines' [-2, 2], where the map is not the identity (their tails are: test_spline.py)
    return layer, perturb_params(layer, dim, seed, scale), rng.uniform(-1.9, 1.9, (6, dim)), rng.normal(size=(6, C))


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
@pytest.mark.parametrize("seed", range(3))
def test_context_changes_the_map_and_its_log_det(name, seed):
    layer, params, x, c = drawn(name, seed)
    y, log_det = layer.forward(params, x, c)
    y_other, log_det_other = layer.forward(params, x, c + 1.0)
    assert np.all(np.abs(y - y_other).max(axis=1) > 1e-6)
    assert np.all(np.abs(log_det - log_det_other) > 1e-9)


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_context_gradient_reaches_every_changed_coordinate(name):
    """d y / d c is non-zero for every coordinate the layer changes: the first coordinate of an
    autoregressive layer (which sees no x) included, so at D = 1 the context is all it has."""
    layer, params, x, c = drawn(name, 0)
    changed = getattr(layer, "index_b", np.arange(x.shape[1]))
    for i in changed:
        d_context = grad(lambda cc: np.sum(layer.forward(params, x, cc)[0][:, i]))(c)
        assert np.all(np.abs(d_context).sum(axis=1) > 1e-9)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("seed", range(3))
def test_autoregressive_order_in_x_holds_for_every_context(name, direction, seed):
    """Each point with its own context (contexts far apart, up to |c| = 10): dy_i/dx_j = 0 for j > i."""
    layer, params, x, _ = drawn(name, seed)
    c = np.random.default_rng(seed).normal(scale=5.0, size=(len(x), C))
    step = getattr(layer, direction)
    jacobians = np.stack([tf.autograd_jacobian(lambda p: step(params, p, c[i:i + 1])[0], x[i:i + 1])[0]
                          for i in range(len(x))])
    assert np.all(np.triu(jacobians, 1) == 0)
    assert np.abs(np.tril(jacobians, -1)).max() > 0


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_inverse_at_the_same_context_undoes_forward(name):
    layer, params, x, c = drawn(name, 1)
    y, log_det = layer.forward(params, x, c)
    back, inverse_log_det = layer.inverse(params, y, c)
    assert np.allclose(back, x, rtol=0, atol=1e-10)
    assert np.allclose(inverse_log_det, -log_det, rtol=0, atol=1e-10)


# --- a conditional flow ------------------------------------------------------------------------

def conditional_flow_2d():
    """Both families, both directions: coupling, permutation, MAF with splines, and an IAF."""
    return tf.Flow(tf.StandardNormal(2), [
        tf.AffineCoupling([1, 0], HIDDEN, context_dim=1), tf.Reverse(),
        tf.Invert(tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=3.0, context_dim=1)),
        tf.AffineAutoregressive(HIDDEN, context_dim=1)])


def pushed(flow, seed, scale=0.2):
    rng = np.random.default_rng(seed)
    params = flow.init(rng)
    theta, unflatten = tf.flatten_params(params)
    return unflatten(theta + scale * rng.standard_normal(theta.shape))


@pytest.mark.parametrize("context", [-2.0, 0.0, 1.5])
def test_2d_density_integrates_to_one_for_each_context(context):
    """Midpoint rule, 600^2 cells, over the box that holds the image of the noise disk of radius 6
    at this context (as in test_flow.py: the mass outside is below exp(-18)). The splines' second
    derivative jumps at their knots, so the rule converges as h^2 only: 1.2e-4 off at 400^2 cells,
    5e-5 at 800^2 (measured), inside 1e-3."""
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    angle = np.linspace(0, 2 * np.pi, 4000)
    circle = flow.forward(params, 6 * np.stack([np.cos(angle), np.sin(angle)], axis=1), context=[context])[0]
    total = integrate_2d(lambda x: flow.log_prob(params, x, context=[context]), circle.min(0), circle.max(0), 600)
    assert abs(total - 1) < 1e-3


@pytest.mark.parametrize("context", [[-1.0, 0.5], [2.0, -2.0]])
def test_1d_density_integrates_to_one_for_each_context(context):
    flow = tf.Flow(tf.StandardNormal(1), [tf.SplineAutoregressive(HIDDEN, num_bins=4, bound=2.0, context_dim=2),
                                          tf.AffineAutoregressive(HIDDEN, context_dim=2)])
    params = pushed(flow, 1, 0.4)
    centres, width = midpoints(-40, 40, 200_000)
    assert abs(np.exp(flow.log_prob(params, centres[:, None], context=context)).sum() * width - 1) < 1e-6


def test_density_really_depends_on_the_context():
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    x = np.random.default_rng(0).normal(size=(100, 2))
    assert np.abs(flow.log_prob(params, x, context=[-2.0]) - flow.log_prob(params, x, context=[1.5])).min() > 1e-6


@pytest.mark.parametrize("context", [-2.0, 1.5])
def test_samples_follow_log_prob_at_each_context(context):
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    rng = np.random.default_rng(2)
    pilot, x = flow.sample(params, rng, 20_000, context=[context]), flow.sample(params, rng, 100_000, context=[context])
    chi2 = histogram_chi2(x, pilot, lambda points: flow.log_prob(params, points, context=[context]))
    assert chi2 < CHI2_64_BOUND


def test_one_context_row_is_the_same_as_that_row_repeated():
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    x = np.random.default_rng(0).normal(size=(5, 2))
    repeated = np.full((5, 1), 0.7)
    assert np.array_equal(flow.log_prob(params, x, context=[0.7]), flow.log_prob(params, x, context=repeated))
    assert np.array_equal(flow.log_prob(params, x, context=[[0.7]]), flow.log_prob(params, x, context=repeated))
    one, many = (flow.sample(params, np.random.default_rng(3), 5, context=c) for c in ([0.7], repeated))
    assert np.array_equal(one, many)


def test_each_sample_is_drawn_at_its_own_context_row():
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    contexts = np.array([[-2.0], [0.0], [1.5]])
    together = flow.sample(params, np.random.default_rng(4), 3, context=contexts)
    z = flow.base.sample(params["base"], np.random.default_rng(4), 3)
    one_by_one = np.concatenate([flow.forward(params, z[i:i + 1], context=contexts[i])[0] for i in range(3)])
    assert np.allclose(together, one_by_one, rtol=0, atol=1e-12)


def test_sample_and_log_prob_agrees_with_log_prob():
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    contexts = np.random.default_rng(5).normal(size=(50, 1))
    x, log_q = flow.sample_and_log_prob(params, np.random.default_rng(6), 50, context=contexts)
    assert np.allclose(log_q, flow.log_prob(params, x, context=contexts), rtol=0, atol=1e-9)


def test_forward_kl_on_pairs_is_minus_the_mean_conditional_log_prob():
    flow = conditional_flow_2d()
    params = pushed(flow, 0)
    rng = np.random.default_rng(7)
    x, c = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    assert np.isclose(tf.forward_kl(flow)(params, (x, c)), -np.mean(flow.log_prob(params, x, context=c)))


def test_fit_trains_on_pairs_and_keeps_them_together():
    """A pair's context must stay with its x through the shuffle: x = 3 c exactly is learnable
    only if it does (shuffled apart, x and c would be independent and the NLL could not fall far)."""
    flow = tf.Flow(tf.StandardNormal(1), [tf.AffineAutoregressive((16,), context_dim=1)])
    rng = np.random.default_rng(8)
    c = rng.uniform(-1, 1, (512, 1))
    x = 3 * c + 0.05 * rng.standard_normal((512, 1))
    params, history = tf.fit(tf.forward_kl(flow), flow.init(rng), (x, c), rng, 600, 64, 1e-2,
                             schedule="cosine", verbose=False)
    nll = -np.mean(flow.log_prob(params, x, context=c))
    assert nll < 0.0          # N(3c, 0.05^2) has entropy -1.58; without the context it would be ~1.3


def test_fit_rejects_pairs_of_unequal_length():
    flow = tf.Flow(tf.StandardNormal(1), [tf.AffineAutoregressive((4,), context_dim=1)])
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="one row per example"):
        tf.fit(tf.forward_kl(flow), flow.init(rng), (np.zeros((5, 1)), np.zeros((4, 1))), rng, 1, 2)


def test_unconditional_flow_is_unchanged_by_the_context_machinery():
    flow = tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], HIDDEN), tf.AffineAutoregressive(HIDDEN)])
    assert flow.context_dim == 0
    params = pushed(flow, 0)
    x = np.random.default_rng(0).normal(size=(4, 2))
    assert np.array_equal(flow.log_prob(params, x), flow.log_prob(params, x, context=None))


# --- errors that say which mistake it was -------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_layer_without_its_context_says_so(name):
    layer, params, x, _ = drawn(name, 0)
    with pytest.raises(ValueError, match=rf"context_dim={C}: pass a context of shape \(N, {C}\)"):
        layer.forward(params, x)
    with pytest.raises(ValueError, match=rf"context_dim={C}"):
        layer.inverse(params, x)


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_layer_with_a_wrong_context_shape_says_which(name):
    layer, params, x, c = drawn(name, 0)
    with pytest.raises(ValueError, match="one row per point"):
        layer.forward(params, x, c[:2])
    with pytest.raises(ValueError, match=rf"must have {C} columns"):
        layer.forward(params, x, np.zeros((len(x), C + 1)))
    with pytest.raises(ValueError, match="finite"):
        layer.forward(params, x, np.full((len(x), C), np.nan))


@pytest.mark.parametrize("layer", [tf.AffineCoupling([1, 0], HIDDEN), tf.SplineCoupling([1, 0], HIDDEN),
                                   tf.AffineAutoregressive(HIDDEN), tf.SplineAutoregressive(HIDDEN)])
def test_unconditional_layer_given_a_context_says_it_takes_none(layer):
    params = layer.init(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="takes no context: build it with context_dim"):
        layer.forward(params, np.zeros((3, 2)), np.zeros((3, 1)))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
@pytest.mark.parametrize("factory", [lambda c: tf.AffineCoupling([1, 0], context_dim=c),
                                     lambda c: tf.SplineCoupling([1, 0], context_dim=c),
                                     lambda c: tf.AffineAutoregressive(context_dim=c),
                                     lambda c: tf.SplineAutoregressive(context_dim=c)])
def test_bad_context_dim_is_rejected(factory, bad):
    with pytest.raises((ValueError, TypeError), match="context_dim"):
        factory(bad)


def test_flow_without_a_context_says_it_is_conditional():
    flow = conditional_flow_2d()
    params = flow.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"conditional \(context_dim=1\)"):
        flow.log_prob(params, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"conditional \(context_dim=1\)"):
        flow.sample(params, np.random.default_rng(0), 3)


def test_flow_with_a_wrong_context_says_which():
    flow = conditional_flow_2d()
    params = flow.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"one row per point \(3\) or a single row"):
        flow.log_prob(params, np.zeros((3, 2)), context=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="must have 1 columns"):
        flow.sample(params, np.random.default_rng(0), 3, context=[0.0, 1.0])
    with pytest.raises(TypeError, match="context"):
        flow.log_prob(params, np.zeros((3, 2)), context="a")


def test_unconditional_flow_given_a_context_says_it_takes_none():
    flow = tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], HIDDEN)])
    with pytest.raises(ValueError, match="takes no context"):
        flow.log_prob(flow.init(np.random.default_rng(0)), np.zeros((3, 2)), context=[1.0])


def test_flow_rejects_layers_with_different_context_dims():
    with pytest.raises(ValueError, match=r"one context_dim; got \[1, 2\]"):
        tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], context_dim=1),
                                       tf.AffineCoupling([0, 1], context_dim=2)])

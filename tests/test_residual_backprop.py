"""The residual block as one primitive (tinyflow/residual_backprop.py) against the readable
InvertibleResidual.forward_plain: the same values, the same gradients as autograd derives for the
readable version (with respect to x and every raw parameter), gradients that match central finite
differences, and one node on the tape where the readable version records dozens.

Cases cover every activation, D = 1, 2 (the 2 x 2 determinant written out) and 3 (slogdet), one
to three hidden layers, weights pushed away from their initial values (so every normalisation
is active) or shrunk inside the bound (so none is), and points far out, where the activations
saturate. Gradients are compared through random cotangents: d/d(arg) [sum(wy * y) + sum(wl * log_det)].
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyflow.residual import InvertibleResidual
from tinyflow.strategies import perturb_params

PRIMITIVE_TOL = 1e-12      # the same arithmetic in another order: rounding only (relative to the largest entry)
FINITE_DIFF_TOL = 1e-7     # central differences with h = 1e-6
SHAPES = [(1, (8,)), (2, (8, 8)), (2, (5,)), (3, (6, 7, 5))]


def case(activation, dim, hidden, seed, scale, spread):
    """(layer, params, x, wy, wl): params pushed by `scale` (0.05: every weight inside its bound),
    points spread over [-spread, spread]."""
    layer = InvertibleResidual(hidden, 0.9, activation)
    params = perturb_params(layer, dim, seed, 1.0)
    if scale < 1:
        params = [{key: value * scale if key == "W" else value for key, value in p.items()} for p in params]
    rng = np.random.default_rng(seed)
    x = rng.uniform(-spread, spread, (6, dim))
    return layer, params, x, rng.standard_normal((6, dim)), rng.standard_normal(6)


def weighted(forward, wy, wl):
    """sum(wy * y) + sum(wl * log_det): a scalar whose gradient is one VJP of the layer."""
    def total(params, x):
        y, log_det = forward(params, x)
        return anp.sum(wy * y) + anp.sum(wl * log_det)
    return total


def relative(got, want):
    return np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))


CASES = given(activation=st.sampled_from(["lipswish", "tanh", "elu"]), shape=st.sampled_from(SHAPES),
              seed=st.integers(0, 2 ** 32 - 1), scale=st.sampled_from([1.0, 0.05]),
              spread=st.sampled_from([2.0, 30.0]))


@CASES
@settings(max_examples=40, deadline=None)
def test_primitive_computes_the_readable_forward(activation, shape, seed, scale, spread):
    layer, params, x, _, _ = case(activation, *shape, seed, scale, spread)
    (y, log_det), (y_plain, log_det_plain) = layer.forward(params, x), layer.forward_plain(params, x)
    assert relative(y, y_plain) <= PRIMITIVE_TOL and relative(log_det, log_det_plain) <= PRIMITIVE_TOL


@CASES
@settings(max_examples=40, deadline=None)
def test_primitive_gradients_match_autograd_of_the_readable_forward(activation, shape, seed, scale, spread):
    layer, params, x, wy, wl = case(activation, *shape, seed, scale, spread)
    fast, plain = weighted(layer.forward, wy, wl), weighted(layer.forward_plain, wy, wl)
    assert relative(grad(fast, 1)(params, x), grad(plain, 1)(params, x)) <= PRIMITIVE_TOL
    got, want = flatten(grad(fast)(params, x))[0], flatten(grad(plain)(params, x))[0]
    assert relative(got, want) <= PRIMITIVE_TOL


@pytest.mark.parametrize("activation", ["lipswish", "tanh", "elu"])
@pytest.mark.parametrize("dim, hidden", [(2, (6, 5)), (3, (4,))])
def test_primitive_gradients_match_finite_differences(activation, dim, hidden):
    layer, params, x, wy, wl = case(activation, dim, hidden, 7, 1.0, 2.0)
    theta, unflatten = flatten(params)
    loss = lambda t: weighted(layer.forward, wy, wl)(unflatten(t), x)
    h = 1e-6
    difference = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    assert np.max(np.abs(grad(loss)(theta) - difference)) <= FINITE_DIFF_TOL


def test_inverse_log_det_gradient_through_the_primitive_matches_the_readable_one():
    layer, params, x, wy, wl = case("lipswish", 2, (8, 8), 3, 1.0, 2.0)

    def readable_inverse(p, y):
        x = layer.preimage(p, y)
        return x, -layer.forward_plain(p, x)[1]
    got = flatten(grad(weighted(layer.inverse, wy, wl))(params, x))[0]
    want = flatten(grad(weighted(readable_inverse, wy, wl))(params, x))[0]
    assert relative(got, want) <= PRIMITIVE_TOL


def test_forward_records_one_node_where_the_readable_version_records_dozens():
    """Nodes on the tape of the layer as a function of x, counted as chapter 8 counts them: the
    primitive and a read of each output, plus the input and the 5 nodes of the weighted sums."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort
    layer, params, x, wy, wl = case("lipswish", 2, (64, 64), 0, 1.0, 2.0)

    def nodes(forward):
        _, end = trace(VJPNode.new_root(), lambda x: weighted(forward, wy, wl)(params, x), x)
        return sum(1 for _ in toposort(end))
    assert nodes(layer.forward) == 9 and nodes(layer.forward_plain) >= 30


@pytest.mark.parametrize("activation", ["lipswish", "tanh", "elu"])
def test_jvp_primitive_gives_the_readable_map_and_products_and_their_gradients(activation):
    from tinyflow.residual import jvp, network, raw_leaves
    from tinyflow.residual_backprop import residual_jvp
    layer, params, x, wy, _ = case(activation, 3, (6, 5), 11, 1.0, 2.0)
    V = np.random.default_rng(12).standard_normal((4,) + x.shape)
    A = np.random.default_rng(13).standard_normal(V.shape)

    def fast(params, x):
        y, JV = residual_jvp(x, V, layer.lipschitz, activation, {}, None, *raw_leaves(params))
        return anp.sum(wy * y) + anp.sum(A * JV)

    def plain(params, x):
        weights, betas = layer.weights(params)
        g, slopes = network(weights, betas, x, activation)
        return anp.sum(wy * (x + g)) + sum(anp.sum(A[k] * jvp(weights, slopes, V[k])) for k in range(len(V)))
    assert abs(fast(params, x) - plain(params, x)) <= PRIMITIVE_TOL * max(1.0, abs(plain(params, x)))
    assert relative(grad(fast, 1)(params, x), grad(plain, 1)(params, x)) <= PRIMITIVE_TOL
    assert relative(flatten(grad(fast)(params, x))[0], flatten(grad(plain)(params, x))[0]) <= PRIMITIVE_TOL
    with pytest.raises(NotImplementedError, match="directions"):
        grad(lambda V: anp.sum(residual_jvp(x, V, 0.9, activation, {}, None, *raw_leaves(params))[1]))(V)


@pytest.mark.parametrize("activation", ["lipswish", "tanh"])
def test_params_read_as_one_vector_give_the_same_numbers_bit_for_bit(activation):
    """fit's flat parameters (leaves.py) reach the primitive as one vector per block; the values
    and the gradient with respect to theta are those of the separate arrays, exactly."""
    from autograd import value_and_grad
    from tinyflow.leaves import flatten_params, leaf_index, leaves
    layer, params, x, wy, wl = case(activation, 2, (6, 5), 5, 1.0, 2.0)
    theta, unflatten = flatten_params(params)
    total = weighted(layer.forward, wy, wl)
    one_vector = value_and_grad(lambda t: total(leaves(t, leaf_index(params)), x))(theta)
    separate = value_and_grad(lambda t: total(unflatten(t), x))(theta)
    assert one_vector[0] == separate[0] and np.array_equal(one_vector[1], separate[1])

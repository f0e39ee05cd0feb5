"""Stack (stack.py): K layers run as one layer and one node compute what the K layers compute one by one.

The shared contract (tests/test_layers.py) covers a Stack's round trip, log-det and gradients;
these tests hold it to the K separate layers digit for digit, and check what it refuses.
"""
import numpy as np
import pytest
from autograd.util import toposort

import tinyflow as tf
from tinyflow.tape import RecordingNode, nodes_per_step, traced_step
from tinyflow.energies import Energy
from tinyflow.leaves import flatten_params

K, BATCH = 5, 64


def pair(layer_type, base=tf.DiagNormal, dim=2):
    """The same flow twice: K layers one after another, and one Stack of K; each with its params (the same theta)."""
    flows = tf.Flow(base(dim), [layer_type() for _ in range(K)]), tf.Flow(base(dim), [tf.Stack(layer_type(), K)])
    return [(flow, flow.init(np.random.default_rng(3))) for flow in flows]


def loss_and_gradient(flow, params, seed=4):
    theta, _, loss_and_grad = tf.flat_loss_and_grad(tf.reverse_kl(flow, Energy(2).log_prob), params)
    return loss_and_grad(theta, np.random.default_rng(seed).standard_normal((BATCH, 2)))


@pytest.mark.parametrize("layer_type", [tf.Planar, tf.Radial])
def test_stack_lays_out_theta_as_the_layers_do(layer_type):
    (_, params), (_, stacked) = pair(layer_type)
    assert np.array_equal(flatten_params(params)[0], flatten_params(stacked)[0])


@pytest.mark.parametrize("layer_type", [tf.Planar, tf.Radial])
def test_stack_forward_is_the_layers_forward_to_the_last_digit(layer_type):
    (flow, params), (stack, stacked) = pair(layer_type)
    z = np.random.default_rng(5).standard_normal((BATCH, 2))
    for got, expected in zip(stack.forward(stacked, z), flow.forward(params, z)):
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("layer_type", [tf.Planar, tf.Radial])
def test_stack_inverse_is_the_layers_inverse_to_the_last_digit(layer_type):
    (flow, params), (stack, stacked) = pair(layer_type)
    x = np.random.default_rng(6).standard_normal((BATCH, 2))
    assert np.array_equal(stack.log_prob(stacked, x), flow.log_prob(params, x))


@pytest.mark.parametrize("layer_type", [tf.Planar, tf.Radial])
def test_stack_gradient_is_the_layers_gradient_to_the_last_digit(layer_type):
    (flow, params), (stack, stacked) = pair(layer_type)
    (loss, gradient), (stack_loss, stack_gradient) = loss_and_gradient(flow, params), loss_and_gradient(stack, stacked)
    assert loss == stack_loss
    assert np.array_equal(gradient, stack_gradient)


def test_stack_records_a_few_nodes_whatever_k():
    batch = np.random.default_rng(7).standard_normal((BATCH, 2))
    counts = []
    for num_layers in (2, 32):
        flow = tf.Flow(tf.DiagNormal(2), [tf.Stack(tf.Planar(), num_layers)])
        counts.append(nodes_per_step(tf.reverse_kl(flow, Energy(1).log_prob), flow.init(np.random.default_rng(0)), batch))
    assert counts[0] == counts[1]


class ReadablePlanar(tf.Planar):
    def forward(self, params, z):
        return tf.planar_plain(z, params["u"], params["w"], params["b"])


def test_a_layer_that_overrides_forward_runs_layer_by_layer():
    stack = tf.Stack(ReadablePlanar(), K)
    assert not stack.fused
    params = stack.init(np.random.default_rng(8), 2)
    z = np.random.default_rng(9).standard_normal((BATCH, 2))
    x, log_det = stack.forward(params, z)
    x_fused, log_det_fused = tf.Stack(tf.Planar(), K).forward(params, z)
    assert np.allclose(x, x_fused, rtol=0, atol=1e-13) and np.allclose(log_det, log_det_fused, rtol=0, atol=1e-13)


def test_params_in_another_key_order_give_the_same_numbers():
    stack = tf.Stack(tf.Planar(), K)
    params = stack.init(np.random.default_rng(10), 2)
    reordered = [{"b": p["b"], "w": p["w"], "u": p["u"]} for p in params]
    z = np.random.default_rng(11).standard_normal((BATCH, 2))
    assert np.array_equal(stack.forward(reordered, z)[0], stack.forward(params, z)[0])


def test_stack_refuses_params_of_another_length():
    stack = tf.Stack(tf.Planar(), K)
    params = stack.init(np.random.default_rng(12), 2)
    with pytest.raises(ValueError, match=f"list of {K} params"):
        stack.forward(params[:-1], np.zeros((3, 2)))


def test_stack_names_the_columns_its_params_expect():
    stack = tf.Stack(tf.Planar(), K)
    params = stack.init(np.random.default_rng(13), 3)
    with pytest.raises(ValueError, match=r"must have 3 columns"):
        stack.forward(params, np.zeros((4, 2)))


def test_stack_refuses_params_of_another_shape():
    stack = tf.Stack(tf.Planar(), K)
    params = stack.init(np.random.default_rng(13), 2)
    params[2]["b"] = np.zeros(2)                       # b is a number
    with pytest.raises(ValueError, match="params must hold"):
        stack.forward(params, np.zeros((4, 2)))


@pytest.mark.parametrize("num_layers", [0, 2.0, "3"])
def test_stack_refuses_a_bad_number_of_layers(num_layers):
    with pytest.raises((TypeError, ValueError), match="num_layers"):
        tf.Stack(tf.Planar(), num_layers)


def test_stack_refuses_something_that_is_not_a_layer():
    with pytest.raises(TypeError, match="init/forward/inverse"):
        tf.Stack(object(), 3)


def test_an_overflow_names_the_layer_of_the_stack():
    stack = tf.Stack(tf.Planar(), 3)
    params = stack.init(np.random.default_rng(14), 2)
    params[1]["u"] = np.array([1e308, 1e308])          # x = z + u_hat tanh(a) overflows
    with pytest.raises(tf.NonFiniteError, match="layer 1 of the stack"), np.errstate(all="ignore"):
        stack.forward(params, np.full((4, 2), 1e308))


def test_stack_tape_holds_one_stacked_node():
    flow = tf.Flow(tf.DiagNormal(2), [tf.Stack(tf.Planar(), 8)])
    params = flow.init(np.random.default_rng(15))
    node = traced_step(tf.reverse_kl(flow, Energy(1).log_prob), params,
                       np.random.default_rng(16).standard_normal((BATCH, 2)), RecordingNode)
    names = [n.name for n in toposort(node)]
    assert names.count("stacked") == 1 and "planar" not in names

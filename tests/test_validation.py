"""Bad inputs raise a ValueError or TypeError whose message names what was expected."""
import numpy as np
import pytest

import tinyflow as tf
from tinyflow.strategies import perturb_params
from strategies_core import LAYER_NAMES, LAYERS

RNG = np.random.default_rng(0)


def layer_and_params(name):
    factory, dim = LAYERS[name]
    layer = factory()
    return layer, perturb_params(layer, dim, 0, 0.5), dim


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_non_2d_input_is_refused(name, direction):
    layer, params, dim = layer_and_params(name)
    with pytest.raises(ValueError, match=r"must be 2D with shape \(N, D\)"):
        getattr(layer, direction)(params, np.ones(dim))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_non_finite_input_is_refused(name, direction, bad):
    layer, params, dim = layer_and_params(name)
    x = np.ones((3, dim))
    x[1, 0] = bad
    with pytest.raises(ValueError, match="must be finite, got 1 NaN/inf"):
        getattr(layer, direction)(params, x)


# Layers whose parameters (or hyperparameters) fix D; the others (Exp, fixed LeakyReLU, Reverse)
# are elementwise or structural and accept any D on purpose.
FIXED_DIM = [name for name in LAYER_NAMES if name not in ("Exp", "LeakyReLU-fixed", "Reverse")]


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", FIXED_DIM)
def test_wrong_dimension_is_refused(name, direction):
    layer, params, dim = layer_and_params(name)
    with pytest.raises(ValueError, match=rf"must have {dim} columns"):
        getattr(layer, direction)(params, np.ones((3, dim + 1)))


def test_flow_log_prob_names_the_dimension():
    flow = tf.Flow(tf.StandardNormal(2), [tf.Reverse()])
    with pytest.raises(ValueError, match=r"x must have 2 columns \(shape \(N, 2\)\), got shape \(4, 3\)"):
        flow.log_prob(flow.init(RNG), np.zeros((4, 3)))


@pytest.mark.parametrize("x, message", [("abc", "must be an array of shape"), (None, "must be an array of shape"),
                                        (np.array([["a", "b"]]), "must hold real numbers"),
                                        (np.array([[1 + 2j]]), "must hold real numbers")])
def test_non_numeric_input_is_a_type_error(x, message):
    with pytest.raises(TypeError, match=message):
        tf.Reverse().forward({}, x)


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        tf.Reverse().forward({}, np.zeros((0, 2)))


COUPLINGS = pytest.mark.parametrize("coupling", [tf.AffineCoupling, tf.SplineCoupling])
MASK_MESSAGE = r"mask must be a 1D sequence of 0s \(changed\) and 1s \(kept\) with at least one of each"


@COUPLINGS
@pytest.mark.parametrize("mask", [[0, 2], [0.5, 1], [[1, 0]], ["a", "b"]])
def test_mask_must_be_zeros_and_ones(coupling, mask):
    with pytest.raises(ValueError, match=MASK_MESSAGE):
        coupling(mask)


@COUPLINGS
@pytest.mark.parametrize("mask", [[1, 1, 1], [0, 0], [1]])
def test_mask_must_keep_and_change_something(coupling, mask):
    with pytest.raises(ValueError, match=MASK_MESSAGE):
        coupling(mask)


def test_mask_length_must_match_dim():
    with pytest.raises(ValueError, match="mask has length 2 but the flow has dim 3"):
        tf.Flow(tf.StandardNormal(3), [tf.AffineCoupling([1, 0])]).init(RNG)


@pytest.mark.parametrize("alpha", [0, -0.1, np.nan, np.inf])
@pytest.mark.parametrize("learnable", [False, True])
def test_slope_must_be_positive_and_finite(alpha, learnable):
    with pytest.raises(ValueError, match=r"alpha \(the negative-side slope\) must be positive and finite"):
        tf.LeakyReLU(alpha, learnable=learnable)


@pytest.mark.parametrize("alpha", ["0.1", None, True])
def test_slope_must_be_a_number(alpha):
    with pytest.raises(TypeError, match="alpha .* must be a positive number"):
        tf.LeakyReLU(alpha)


@pytest.mark.parametrize("order", [[0, 0], [1, 2], [0, 1.0], [[0, 1]], [-1, 0]])
@pytest.mark.parametrize("make", [tf.Permute, tf.LULinear])
def test_order_must_be_a_permutation(make, order):
    with pytest.raises(ValueError, match=r"order must be a permutation of 0..D-1"):
        make(order)


@pytest.mark.parametrize("make", [tf.Permute, tf.LULinear])
def test_order_length_must_match_dim(make):
    with pytest.raises(ValueError, match="order has length 3 but the flow has dim 2"):
        tf.Flow(tf.StandardNormal(2), [make([2, 0, 1])]).init(RNG)


@pytest.mark.parametrize("hidden", [(), (0,), (8, -1), (2.5,), "8"])
@pytest.mark.parametrize("make", [lambda h: tf.AffineCoupling([1, 0], hidden=h), lambda h: tf.AffineAutoregressive(hidden=h)])
def test_hidden_sizes_must_be_positive_ints(make, hidden):
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence of positive ints"):
        make(hidden)


@pytest.mark.parametrize("s_max", [0, -1.0, np.inf])
def test_s_max_must_be_positive(s_max):
    with pytest.raises(ValueError, match="s_max must be positive and finite"):
        tf.AffineAutoregressive(s_max=s_max)


@pytest.mark.parametrize("rng", [0, None, np.random.RandomState(0), "seed"])
def test_rng_must_be_a_generator(rng):
    flow = tf.Flow(tf.StandardNormal(2), [tf.Reverse()])
    params = flow.init(RNG)
    for call in (lambda: flow.init(rng), lambda: flow.sample(params, rng, 5),
                 lambda: flow.sample_and_log_prob(params, rng, 5), lambda: tf.Banana().sample(rng, 5)):
        with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
            call()


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_count_must_be_a_positive_int(n):
    flow = tf.Flow(tf.StandardNormal(2), [tf.Reverse()])
    with pytest.raises((ValueError, TypeError), match="n must be"):
        flow.sample(flow.init(RNG), RNG, n)


@pytest.mark.parametrize("dim", [0, -1, 2.0, "2"])
def test_base_dim_must_be_a_positive_int(dim):
    with pytest.raises((ValueError, TypeError), match="dim must be"):
        tf.StandardNormal(dim)


def test_flow_refuses_things_that_are_not_layers():
    with pytest.raises(TypeError, match=r"layers\[1\] must have init/forward/inverse"):
        tf.Flow(tf.StandardNormal(2), [tf.Reverse(), "coupling"])
    with pytest.raises(TypeError, match="base must be a distribution"):
        tf.Flow(2, [tf.Reverse()])
    with pytest.raises(TypeError, match="Invert needs a layer"):
        tf.Invert(3)


def test_exp_inverse_needs_positive_values():
    with pytest.raises(ValueError, match="needs y > 0"):
        tf.Exp().inverse({}, np.array([[1.0, -1.0]]))


def test_fit_refuses_non_finite_initial_parameters():
    loss = lambda params, x: np.sum(params["w"] * 0)
    with pytest.raises(ValueError, match="finite initial parameters"):
        tf.fit(loss, {"w": np.array([np.nan])}, np.zeros((4, 1)), RNG, num_steps=2, batch_size=2)


def small_two_layer_flow():
    return tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], hidden=(4,)), tf.LULinear()])


@pytest.mark.parametrize("wrong, message", [
    (lambda params: params["layers"], "params must be the dict this flow's init returned.*got a list of 2"),
    (lambda params: {"layers": params["layers"]}, "got a dict with keys \\['layers'\\]"),
    (lambda params: None, "got a NoneType"),
])
@pytest.mark.parametrize("call", ["log_prob", "sample", "forward", "trace"])
def test_params_of_the_wrong_structure_say_what_was_expected(wrong, message, call):
    flow = small_two_layer_flow()
    params, x, rng = flow.init(np.random.default_rng(0)), np.zeros((3, 2)), np.random.default_rng(1)
    run = {"log_prob": lambda p: flow.log_prob(p, x), "sample": lambda p: flow.sample(p, rng, 3),
           "forward": lambda p: flow.forward(p, x), "trace": lambda p: flow.trace(p, x)}[call]
    with pytest.raises(TypeError, match=message):
        run(wrong(params))


def test_params_of_another_flow_name_the_layer_that_does_not_fit():
    flow, other = small_two_layer_flow(), tf.Flow(tf.StandardNormal(2), [tf.LULinear(), tf.AffineCoupling([1, 0])])
    with pytest.raises(ValueError, match=r"params\['layers'\]\[1\] do not fit layers\[1\] \(LULinear\): it expects"):
        flow.log_prob(other.init(np.random.default_rng(0)), np.zeros((3, 2)))
    three = tf.Flow(tf.StandardNormal(2), [tf.LULinear(), tf.LULinear(), tf.LULinear()])
    with pytest.raises(ValueError, match="one entry per layer \\(2\\), got 3"):
        flow.log_prob(three.init(np.random.default_rng(0)), np.zeros((3, 2)))

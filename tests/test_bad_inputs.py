"""The bad inputs a reviewer tried on the library, one test each: every one gets a ValueError or
TypeError naming the argument and what was expected (or, where the input was fine, an answer)."""
import numpy as np
import pytest

import tinyflow as tf

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 2))
C = RNG.standard_normal((16, 1))


def spline_flow(num_bins):
    return tf.Flow(tf.StandardNormal(2), [tf.SplineCoupling([1, 0], hidden=(8,), num_bins=num_bins)])


def affine_flow(context_dim=0):
    return tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], hidden=(8,), context_dim=context_dim)])


# --- a checkpoint from another flow is named as such, with both structures ------------------------

@pytest.mark.parametrize("flow, other, context", [
    (spline_flow(8), spline_flow(4), None),                 # num_bins 4 vs 8
    (spline_flow(8), affine_flow(), None),                  # affine params into a spline flow
    (affine_flow(), affine_flow(context_dim=1), None),      # a conditional checkpoint, unconditional flow
    (affine_flow(context_dim=1), affine_flow(), C),         # and the other way round
], ids=["num_bins", "affine-into-spline", "conditional-into-unconditional", "unconditional-into-conditional"])
def test_params_of_another_flow_show_both_structures(flow, other, context):
    params = other.init(RNG)
    with pytest.raises(ValueError, match=r"params\['layers'\]\[0\] do not fit layers\[0\] .* it expects "
                                         r"\[\{'W': .*got \[\{'W': .*params of another flow"):
        flow.log_prob(params, X, context=context)


# --- a context for C = 1 may be a number or one value per point --------------------------------

def test_a_number_is_the_context_of_every_point_when_c_is_1():
    flow = affine_flow(context_dim=1)
    params = flow.init(RNG)
    assert np.array_equal(flow.log_prob(params, X, context=0.5), flow.log_prob(params, X, context=np.full((16, 1), 0.5)))


def test_an_n_vector_is_one_context_per_point_when_c_is_1():
    flow = affine_flow(context_dim=1)
    params = flow.init(RNG)
    assert np.array_equal(flow.log_prob(params, X, context=C[:, 0]), flow.log_prob(params, X, context=C))


def test_a_layer_takes_an_n_vector_context_when_c_is_1():
    layer = tf.AffineCoupling([1, 0], hidden=(8,), context_dim=1)
    params = layer.init(RNG, 2)
    assert np.array_equal(layer.forward(params, X, C[:, 0])[0], layer.forward(params, X, C)[0])


def test_a_context_of_the_wrong_rank_is_named():
    with pytest.raises(ValueError, match=r"context must be \(N, 1\)"):
        affine_flow(context_dim=1).log_prob(affine_flow(context_dim=1).init(RNG), X, context=np.zeros((16, 1, 1)))


def test_check_layer_says_it_takes_one_context_row():
    layer = tf.AffineCoupling([1, 0], hidden=(8,), context_dim=1)
    with pytest.raises(ValueError, match=r"check_layer takes one context row, \(C,\) or \(1, C\).* got shape \(4, 1\)"):
        tf.check_layer(layer, layer.init(RNG, 2), X[:4], context=C[:4])


# --- fit's arguments are checked before training starts -------------------------------------------

def fit(**options):
    flow = affine_flow()
    defaults = dict(loss=tf.forward_kl(flow), params=flow.init(RNG), data=X, rng=np.random.default_rng(1),
                    num_steps=3, batch_size=4, verbose=False)
    return tf.fit(**{**defaults, **options})


def test_fit_says_a_list_of_pairs_should_be_a_tuple():
    flow = affine_flow(context_dim=1)
    with pytest.raises(TypeError, match=r"data is a list of 2 arrays .* pass them as a tuple \(x, c\)"):
        fit(loss=tf.forward_kl(flow), params=flow.init(RNG), data=[X, C])


@pytest.mark.parametrize("options, error, message", [
    ({"eval_every": 0}, ValueError, "eval_every must be >= 1, got 0"),
    ({"eval_every": -1}, ValueError, "eval_every must be >= 1, got -1"),
    ({"patience": "5"}, TypeError, "patience must be an int >= 1, got str"),
    ({"patience": -3}, ValueError, "patience must be >= 1, got -3"),
    ({"max_skips": 0}, ValueError, "max_skips must be >= 1"),
    ({"print_every": 2.5}, TypeError, "print_every must be an int"),
])
def test_fit_checks_its_options_before_the_first_step(options, error, message):
    with pytest.raises(error, match=message):
        fit(validation=X, **options)


def test_fit_checks_the_callbacks_arguments_before_the_first_step():
    steps = []
    with pytest.raises(TypeError, match=r"callback must take three arguments, callback\(step, params, loss\)"):
        fit(callback=lambda step: steps.append(step))
    assert steps == []


def test_numpy_integers_count_as_integers():
    assert tf.SplineCoupling([1, 0], num_bins=np.int64(8)).num_bins == 8
    assert fit(num_steps=np.int64(2))[1]["loss"].shape == (2,)


# --- an overflow inside a layer names the layer, and training skips it --------------------------

def overflowing_flow():
    """An Affine layer scaled by exp(700) on the density side: finite points in, inf out."""
    flow = tf.Flow(tf.StandardNormal(2), [tf.Reverse(), tf.Affine()])
    params = flow.init(RNG)
    params["layers"][1]["log_scale"] = np.full(2, -700.0)
    return flow, params


def test_an_overflow_inside_a_layer_names_the_layer():
    flow, params = overflowing_flow()
    with pytest.raises(tf.NonFiniteError, match=r"layers\[1\] \(Affine\) inverse gave NaN or inf from finite points"):
        flow.log_prob(params, np.full((2, 2), 1e10))


def test_fit_counts_a_step_with_an_overflow_inside_a_layer_as_skipped():
    flow, params = overflowing_flow()
    params, history = tf.fit(tf.forward_kl(flow), params, np.full((8, 2), 1e10), RNG, 3, 4, verbose=False)
    assert history["skipped"] == 3 and np.all(np.isfinite(tf.flatten_params(params)[0]))


# --- files ------------------------------------------------------------------------------------------

def test_a_truncated_digits_file_is_named_with_what_was_expected(tmp_path):
    raw = tf.datasets.DIGITS_FILE.read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="cut.csv.gz: not a readable copy of the digits table"):
        tf.datasets.digits(tmp_path / "cut.csv.gz")


@pytest.mark.parametrize("content", [b"junk" * 100, b""])
def test_load_params_on_a_junk_file_says_it_is_not_a_parameter_file(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a tinyflow parameter file") as caught:
        tf.load_params(path)
    assert "allow_pickle" not in str(caught.value)        # never numpy's hint to unpickle it


class StandardNormal1D:
    """p(x | c) at one context: N(0, 1), with its entropy, as held_out_report needs."""
    entropy = 0.5 * np.log(2 * np.pi * np.e)

    def sample(self, rng, n):
        return rng.standard_normal((n, 1))

    def log_prob(self, x):
        return -0.5 * x[:, 0] ** 2 - 0.5 * np.log(2 * np.pi)


def test_held_out_report_takes_the_context_of_a_conditional_target():
    flow = tf.Flow(tf.StandardNormal(1), [tf.AffineAutoregressive(hidden=(8,), context_dim=1)])
    params = flow.init(RNG)
    target = StandardNormal1D()
    report = tf.held_out_report(flow, params, target, np.random.default_rng(2), n=500, context=0.5)
    x = target.sample(np.random.default_rng(2), 500)
    assert report["nll"] == pytest.approx(-np.mean(flow.log_prob(params, x, context=0.5)), rel=1e-12)


def test_training_a_spline_on_data_beyond_its_bound_warns_once():
    flow = tf.Flow(tf.StandardNormal(1), [tf.RationalQuadraticSpline(bound=3.0)])
    data = 10 * RNG.standard_normal((256, 1))
    with pytest.warns(UserWarning, match=r"more than 1% of a training batch lies outside a spline's bound \[-3, 3\]") as caught:
        tf.fit(tf.forward_kl(flow), flow.init(RNG), data, RNG, 5, 64, verbose=False)
    assert len([w for w in caught if "outside a spline's bound" in str(w.message)]) >= 1

"""tinyflow.layer_plots runs headless, draws one panel per stage, and its numbers are the flow's:
the truncated flow's density is the full flow's at k = K, the log-det map sums the layers."""
import matplotlib

matplotlib.use("Agg")                     # headless: no display needed

import matplotlib.pyplot as plt           # noqa: E402
import numpy as np                        # noqa: E402
import pytest                             # noqa: E402
from autograd.misc import flatten         # noqa: E402

import tinyflow as tf                     # noqa: E402
from tinyflow import layer_plots          # noqa: E402


@pytest.fixture(scope="module")
def flow_and_params():
    """A 3-layer 2D flow with parameters moved away from init (so no layer is the identity)."""
    rng = np.random.default_rng(0)
    flow = tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], hidden=(8,)),
                                          tf.LeakyReLU(0.3, learnable=True), tf.AffineCoupling([0, 1], hidden=(8,))])
    theta, unflatten = flatten(flow.init(rng))
    return flow, unflatten(theta + 0.5 * rng.standard_normal(theta.shape))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("draw", ["warped_grid", "quadrant_scatter", "density_after_layers"])
def test_row_figures_have_one_panel_per_stage(flow_and_params, draw):
    flow, params = flow_and_params
    z = np.random.default_rng(1).standard_normal((300, 2))
    kwargs = {"warped_grid": {"num_lines": 5, "num_points": 20}, "quadrant_scatter": {"z": z},
              "density_after_layers": {"z": z, "n": 20}}[draw]
    fig = getattr(layer_plots, draw)(flow, params, **kwargs)
    assert len(fig.axes) == len(flow.layers) + 1
    fig = getattr(layer_plots, draw)(flow, params, stages=[0, 3], **kwargs)
    assert len(fig.axes) == 2 and fig.axes[1].get_title().endswith("= x")


def test_warped_grid_draws_every_grid_line_in_every_panel(flow_and_params):
    flow, params = flow_and_params
    fig = layer_plots.warped_grid(flow, params, num_lines=7, num_points=30)
    assert [len(ax.lines) for ax in fig.axes] == [14] * (len(flow.layers) + 1)


def test_truncated_flow_at_k_equals_K_is_the_flow(flow_and_params):
    flow, params = flow_and_params
    x = np.random.default_rng(2).standard_normal((50, 2))
    flow_k, params_k = layer_plots.truncated(flow, params, len(flow.layers))
    assert np.allclose(flow_k.log_prob(params_k, x), flow.log_prob(params, x), rtol=0, atol=1e-12)


def test_truncated_flow_at_k_equals_0_is_the_base(flow_and_params):
    flow, params = flow_and_params
    x = np.random.default_rng(3).standard_normal((50, 2))
    flow_0, params_0 = layer_plots.truncated(flow, params, 0)
    assert np.allclose(flow_0.log_prob(params_0, x), flow.base.log_prob(params["base"], x), atol=1e-12)


def test_forward_log_dets_sum_to_the_flows_log_det(flow_and_params):
    flow, params = flow_and_params
    z = np.random.default_rng(4).standard_normal((50, 2))
    log_dets = layer_plots.forward_log_dets(flow, params, z)
    assert log_dets.shape == (3, 50)
    assert np.allclose(log_dets.sum(axis=0), flow.forward(params, z)[1], atol=1e-12)


@pytest.mark.parametrize("where", ["base", "data"])
def test_log_det_map_colours_each_grid_point_by_its_log_det(flow_and_params, where):
    flow, params = flow_and_params
    fig, ax = plt.subplots()
    image = layer_plots.log_det_map(ax, flow, params, (-2, 2), (-2, 2), where=where, n=12)
    _, _, points = tf.plotting.grid((-2, 2), (-2, 2), 12)
    z = points if where == "base" else flow.trace(params, points, inverse=True)[-1]
    assert np.allclose(np.asarray(image.get_array()).ravel(), flow.forward(params, z)[1], atol=1e-10)


def test_log_det_map_of_the_leaky_relu_takes_its_four_quadrant_values(flow_and_params):
    flow, params = flow_and_params
    fig, ax = plt.subplots()
    image = layer_plots.log_det_map(ax, flow, params, (-2, 2), (-2, 2), layer=2, n=15)
    log_alpha = params["layers"][1]["log_alpha"]
    expected = {0.0, log_alpha[0], log_alpha[1], log_alpha.sum()}
    assert set(np.round(np.asarray(image.get_array()).ravel(), 12)) <= set(np.round(list(expected), 12))


def test_log_det_map_rejects_an_unknown_space_or_layer(flow_and_params):
    flow, params = flow_and_params
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="where"):
        layer_plots.log_det_map(ax, flow, params, (-2, 2), (-2, 2), where="latent")
    with pytest.raises(ValueError, match="layer"):
        layer_plots.log_det_map(ax, flow, params, (-2, 2), (-2, 2), layer=0)

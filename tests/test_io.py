"""save_params / load_params: bit-exact round trips, no pickle, clear errors for bad files."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import tinyflow as tf
from tinyflow.strategies import perturb_params
from strategies_core import LAYER_NAMES, LAYERS


def assert_bit_exact(loaded, saved):
    """Same tree, same dtypes, shapes and bytes (so -0.0, NaN payloads and inf survive too)."""
    assert type(loaded) is type(saved) or not isinstance(saved, (dict, list))
    if isinstance(saved, dict):
        assert list(loaded) == list(saved)
        for key in saved:
            assert_bit_exact(loaded[key], saved[key])
    elif isinstance(saved, list):
        assert len(loaded) == len(saved)
        for a, b in zip(loaded, saved):
            assert_bit_exact(a, b)
    else:
        saved = np.asarray(saved)
        assert loaded.dtype == saved.dtype and loaded.shape == saved.shape
        assert loaded.tobytes() == saved.tobytes()


leaf = arrays(np.float64, array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
              elements=st.floats(allow_nan=True, allow_infinity=True))
trees = st.recursive(leaf, lambda children: st.one_of(
    st.lists(children, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)), max_leaves=8)


@given(tree=st.dictionaries(st.text(max_size=8), trees, max_size=3))
@settings(max_examples=30)
def test_save_then_load_is_bit_exact(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "params.npz"
    tf.save_params(path, tree)
    assert_bit_exact(tf.load_params(path), tree)


def test_flow_params_of_every_layer_round_trip(tmp_path):
    """Every layer's (pushed) parameters in one flow-shaped tree, including {} entries."""
    params = {"base": {}, "layers": [perturb_params(LAYERS[name][0](), LAYERS[name][1], 0, 0.5)
                                     for name in LAYER_NAMES]}
    tf.save_params(tmp_path / "flow.npz", params)
    loaded = tf.load_params(tmp_path / "flow.npz")
    assert_bit_exact(loaded, params)
    assert loaded["base"] == {} and {} in loaded["layers"]


def test_loaded_params_give_the_same_log_prob(tmp_path):
    flow = tf.Flow(tf.DiagNormal(2), [tf.AffineCoupling([1, 0], hidden=(8,)), tf.LULinear()])
    params = flow.init(np.random.default_rng(0))
    params["layers"][1]["LU"] = np.array([[0.3, 0.5], [-0.2, -0.7]])
    tf.save_params(tmp_path / "p.npz", params)
    x = np.random.default_rng(1).standard_normal((20, 2))
    assert np.array_equal(flow.log_prob(tf.load_params(tmp_path / "p.npz"), x), flow.log_prob(params, x))


def test_zero_dimensional_and_empty_leaves_round_trip(tmp_path):
    tree = {"scalar": np.float64(-0.0), "nothing": np.zeros((0, 3)), "nested": [[], [{}], np.array(2.5)]}
    tf.save_params(tmp_path / "p.npz", tree)
    assert_bit_exact(tf.load_params(tmp_path / "p.npz"), tree)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tf.load_params(tmp_path / "no-such-file.npz")


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "p.npz"
    tf.save_params(path, {"w": np.arange(100.0)})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is not a tinyflow parameter file"):
        tf.load_params(path)


def test_foreign_npz_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(ValueError, match="is not a tinyflow parameter file"):
        tf.load_params(path)


def test_wrong_format_header_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    with open(path, "wb") as f:
        np.savez(f, __tree__=np.array('{"format": "something-else", "tree": {}}'))
    with pytest.raises(ValueError, match="expected format tinyflow-params-v1"):
        tf.load_params(path)


def test_object_array_is_refused_without_unpickling(tmp_path):
    """An object array can only be read by unpickling, which can run code: it must be refused."""
    path = tmp_path / "pickled.npz"
    with open(path, "wb") as f:
        np.savez(f, __tree__=np.array('{"format": "tinyflow-params-v1", "tree": {"array": "a0"}}'),
                 a0=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="is not a tinyflow parameter file"):
        tf.load_params(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not an npz at all")
    with pytest.raises(ValueError, match="is not a tinyflow parameter file"):
        tf.load_params(path)


def test_non_numeric_leaves_cannot_be_saved(tmp_path):
    with pytest.raises(TypeError, match="numeric arrays"):
        tf.save_params(tmp_path / "p.npz", {"w": np.array(["a", "b"])})
    with pytest.raises(TypeError, match="keys must be strings"):
        tf.save_params(tmp_path / "p.npz", {1: np.ones(2)})

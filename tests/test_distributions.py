"""Base distributions: normalised, sampled as they claim, and DiagNormal is an Affine flow."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyflow as tf
from strategies_core import CHI2_64_BOUND, histogram_chi2, integrate_2d


def diag_params(seed):
    rng = np.random.default_rng(seed)
    return {"loc": rng.normal(0, 1, 2), "log_scale": rng.uniform(-1, 1, 2)}


@pytest.mark.parametrize("which", ["StandardNormal", "DiagNormal"])
def test_base_density_integrates_to_one(which):
    base = getattr(tf, which)(2)
    params = base.init(None) if which == "StandardNormal" else diag_params(0)
    loc = params.get("loc", np.zeros(2))
    scale = np.exp(params.get("log_scale", np.zeros(2)))
    total = integrate_2d(lambda z: base.log_prob(params, z), loc - 9 * scale, loc + 9 * scale, 200)  # +-9 sd
    print(f"{which}: integral = {total:.12f}")
    assert abs(total - 1) < 1e-3


@given(seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=20)
def test_diag_normal_is_an_affine_layer_on_a_standard_normal(seed):
    """log N(z; loc, diag(s)^2) = log N((z - loc)/s; 0, I) - sum log s: the 1D change of variables."""
    params = diag_params(seed)
    flow = tf.Flow(tf.StandardNormal(2), [tf.Affine()])
    flow_params = {"base": {}, "layers": [{"log_scale": params["log_scale"], "shift": params["loc"]}]}
    z = np.random.default_rng(seed).uniform(-3, 3, (5, 2))
    assert np.max(np.abs(tf.DiagNormal(2).log_prob(params, z) - flow.log_prob(flow_params, z))) < 1e-12


def test_standard_normal_log_prob_at_the_origin():
    assert tf.StandardNormal(3).log_prob({}, np.zeros((1, 3)))[0] == pytest.approx(-1.5 * np.log(2 * np.pi), abs=1e-15)


@pytest.mark.parametrize("which", ["StandardNormal", "DiagNormal"])
def test_base_samples_follow_log_prob(which):
    base = getattr(tf, which)(2)
    params = base.init(None) if which == "StandardNormal" else diag_params(1)
    pilot = base.sample(params, np.random.default_rng(1), 2000)
    x = base.sample(params, np.random.default_rng(2), 100_000)
    chi2 = histogram_chi2(x, pilot, lambda z: base.log_prob(params, z))
    print(f"{which}: chi^2 = {chi2:.1f} on 64 degrees of freedom")
    assert chi2 < CHI2_64_BOUND


def test_from_noise_matches_sample():
    params = diag_params(2)
    base = tf.DiagNormal(2)
    eps = np.random.default_rng(5).standard_normal((10, 2))
    assert np.array_equal(base.sample(params, np.random.default_rng(5), 10), base.from_noise(params, eps))


@pytest.mark.parametrize("which", ["StandardNormal", "DiagNormal"])
def test_same_seed_gives_same_samples(which):
    base = getattr(tf, which)(2)
    params = base.init(np.random.default_rng(0))
    assert np.array_equal(base.sample(params, np.random.default_rng(3), 20),
                          base.sample(params, np.random.default_rng(3), 20))


def test_base_refuses_points_of_the_wrong_dimension():
    with pytest.raises(ValueError, match=r"z must have 2 columns"):
        tf.DiagNormal(2).log_prob(tf.DiagNormal(2).init(None), np.zeros((3, 4)))

"""tinyflow.strategies: the points visit every branch, the parameters leave init, and
check_layer driven by them passes on every tinyflow layer and fails on a one-branch bug."""
import subprocess
import sys

import numpy as np
import pytest
from autograd.misc import flatten
from hypothesis import given
from hypothesis import strategies as st

import tinyflow as tf
from tinyflow import strategies
from strategies_core import HIDDEN, LAYERS


@given(st.data(), st.integers(1, 5))
def test_points_take_both_signs_in_every_coordinate(data, dim):
    x = data.draw(strategies.points(dim))
    assert np.all((x > 0).any(axis=0)) and np.all((x < 0).any(axis=0))


@given(strategies.points(3, n=5, bound=2.0, margin=0.1))
def test_points_stay_within_bound_and_away_from_zero(x):
    assert x.shape == (5, 3) and x.dtype == np.float64
    assert np.all(np.abs(x) <= 2.0) and np.all(np.abs(x) >= 0.1)


def test_points_refuse_fewer_than_two_rows():
    with pytest.raises(ValueError, match="n >= 2"):
        strategies.points(2, n=1)


@pytest.mark.parametrize("name", ["Affine", "LeakyReLU-learnable", "LULinear"])
@given(data=st.data())
def test_perturbed_params_differ_from_init_in_every_entry(name, data):
    factory, dim = LAYERS[name]           # these layers' init does not depend on the rng
    layer = factory()
    theta_0 = flatten(layer.init(np.random.default_rng(0), dim))[0]
    theta = flatten(data.draw(strategies.perturbed_params(layer, dim)))[0]
    assert theta.shape == theta_0.shape and np.all(theta != theta_0)


@given(strategies.layer_case(tf.AffineCoupling([1, 0], hidden=HIDDEN), dim=2))
def test_perturbed_coupling_is_not_the_identity(case):
    params, x = case                      # at init a coupling is the identity: log_det = 0
    y, log_det = tf.AffineCoupling([1, 0], hidden=HIDDEN).forward(params, x)
    assert np.max(np.abs(log_det)) > 1e-3 and np.max(np.abs(y - x)) > 1e-3


@pytest.mark.parametrize("name", sorted(LAYERS))
@given(data=st.data())
def test_check_layer_passes_on_every_tinyflow_layer(name, data):
    factory, dim = LAYERS[name]
    layer = factory()
    params, x = data.draw(strategies.layer_case(layer, dim), label=name)
    # a spline's slopes span 1e-3..1e3, so central differences reach only ~1e-6 of its log-det
    # (measured in test_layers.finite_difference_log_det); every other check holds 1e-6 there too
    tol = 1e-5 if "Spline" in name else 1e-6
    errors = tf.check_layer(layer, params, x, tol=tol)
    assert max(errors.values()) <= tol


class WrongOnNegativeInputs(tf.LeakyReLU):
    """A leaky ReLU whose inverse forgets to divide by alpha on the negative branch."""

    def inverse(self, params, y):
        return y, -self.forward(params, y)[1]


@given(strategies.layer_case(WrongOnNegativeInputs(0.3), dim=2))
def test_every_drawn_case_catches_a_bug_on_the_negative_branch_only(case):
    with pytest.raises(AssertionError, match="round trip"):
        tf.check_layer(WrongOnNegativeInputs(0.3), *case)
    params, x = case
    tf.check_layer(WrongOnNegativeInputs(0.3), params, np.abs(x))    # positive points miss it


def test_import_tinyflow_does_not_import_hypothesis():
    code = "import sys, tinyflow; print('hypothesis' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

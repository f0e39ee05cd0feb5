"""check_layer must catch broken layers, not just bless correct ones.

Two broken layers written here on purpose, each a bug that has shipped in real flow code:
a log-det with the wrong sign, and a leaky ReLU whose inverse is wrong on one branch only
(which passes any test that only tries positive inputs).
"""
import autograd.numpy as anp
import numpy as np
import pytest

import tinyflow as tf
from tinyflow.strategies import perturb_params

X = np.array([[0.7, -1.2], [-0.4, 2.0], [1.5, 0.3], [-2.2, -0.8]])   # both signs in each column


class WrongSignAffine(tf.Affine):
    """Correct map and inverse, but log_det = -sum(log_scale) in both directions."""

    def forward(self, params, x):
        y, log_det = super().forward(params, x)
        return y, -log_det

    def inverse(self, params, y):
        x, log_det = super().inverse(params, y)
        return x, -log_det


class WrongNegativeBranchLeakyReLU(tf.LeakyReLU):
    """Forward is right; the inverse divides negative y by alpha^2 instead of alpha."""

    def inverse(self, params, y):
        negative = y < 0
        x = anp.where(negative, y / self.alpha ** 2, y)
        return x, -anp.sum(negative * anp.log(self.alpha), axis=1)


def affine_params():
    return {"log_scale": np.array([0.4, -0.9]), "shift": np.array([0.3, -1.0])}


def test_check_layer_passes_a_correct_affine():
    errors = tf.check_layer(tf.Affine(), affine_params(), X)
    assert max(errors.values()) < 1e-9


def test_check_layer_catches_a_log_det_with_the_wrong_sign():
    with pytest.raises(AssertionError, match="log_det vs autograd Jacobian"):
        tf.check_layer(WrongSignAffine(), affine_params(), X)


def test_check_layer_passes_a_correct_leaky_relu():
    errors = tf.check_layer(tf.LeakyReLU(0.3), {}, X)
    assert max(errors.values()) < 1e-9


def test_check_layer_catches_an_inverse_wrong_on_one_branch():
    with pytest.raises(AssertionError, match="round trip x -> y -> x"):
        tf.check_layer(WrongNegativeBranchLeakyReLU(0.3), {}, X)


def test_one_branch_bug_hides_from_positive_inputs():
    """Why the test inputs must visit both branches: on positive x the broken layer passes."""
    tf.check_layer(WrongNegativeBranchLeakyReLU(0.3), {}, np.abs(X))


def test_check_layer_passes_every_library_layer_at_pushed_parameters():
    from strategies_core import LAYER_NAMES, LAYERS
    from tinyflow.strategies import both_signs, perturb_params
    for name in LAYER_NAMES:
        factory, dim = LAYERS[name]
        layer = factory()
        x = both_signs(np.random.default_rng(1).uniform(-3, 3, (4, dim)))
        tf.check_layer(layer, perturb_params(layer, dim, 2, 0.7), x)


class ContextIgnoredOnTheWayBack(tf.AffineCoupling):
    """A conditional coupling whose inverse forgets the context (uses zeros): right at c = 0 only."""

    def inverse(self, params, y, context=None):
        return super().inverse(params, y, np.zeros_like(context))


def test_check_layer_checks_a_conditional_layer_at_the_given_context():
    layer = tf.AffineCoupling([1, 0], (8,), context_dim=2)
    params = perturb_params(layer, 2, 0, 0.7)
    errors = tf.check_layer(layer, params, X, context=[0.5, -1.0])
    assert errors["round trip x -> y -> x"] < 1e-12


def test_check_layer_catches_an_inverse_that_ignores_the_context():
    layer = ContextIgnoredOnTheWayBack([1, 0], (8,), context_dim=2)
    params = perturb_params(layer, 2, 0, 0.7)
    tf.check_layer(layer, params, X, context=[0.0, 0.0])          # where the bug cannot show
    with pytest.raises(AssertionError, match="round trip"):
        tf.check_layer(layer, params, X, context=[0.5, -1.0])

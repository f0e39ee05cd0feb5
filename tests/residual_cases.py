"""A residual layer as strong as its bound allows, shared by test_residual.py and
test_residual_estimators.py.

strong_layer(c) is InvertibleResidual((H,), c, "tanh") with a random W_1 (2, H), W_2 = -W_1^T M
and zero biases. Near x = 0 tanh' = 1, W_1 W_1^T is close to a multiple of I, and spectral
normalisation scales both weights to norm c^(1/2), so J_g ~ -c M^T / ||M||: its norm is within
1% of c (measured: 0.967-0.969 at c = 0.97, for |x| <= 0.2) and its spectral radius about 0.9 c.
M is not normal, so Hutchinson's probes see the off-diagonal entries (the estimators have
variance), and the fixed-point iteration and the series converge as slowly as c allows.
"""
import numpy as np

from tinyflow.residual import InvertibleResidual

M = np.array([[1.0, 0.4], [-0.2, 0.8]])


def strong_layer(c, seed=0, hidden=16):
    """(layer, params) with Lip(g) within 1% of c near 0, in D = 2."""
    W_1 = np.random.default_rng(seed).standard_normal((2, hidden))
    params = [{"W": W_1, "b": np.zeros(hidden)}, {"W": -W_1.T @ M, "b": np.zeros(2)}]
    return InvertibleResidual((hidden,), c, "tanh"), params

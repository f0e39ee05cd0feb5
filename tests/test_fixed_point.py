"""fixed_point (tinyflow/fixed_point.py) on a linear contraction g(x) = x A, ||A|| = c < 1, where
the answer is known: x = y (I + A)^-1, and its gradients are closed forms too."""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from tinyflow.fixed_point import banach_iterate, fixed_point


def contraction(c, seed=0, dim=3):
    A = np.random.default_rng(seed).standard_normal((dim, dim))
    return A * (c / np.linalg.norm(A, 2))


def linear(x, theta):
    return anp.dot(x, theta[0])


@pytest.mark.parametrize("c", [0.3, 0.9, 0.99])
def test_fixed_point_of_a_linear_contraction_is_the_linear_solve(c):
    A = contraction(c)
    y = np.random.default_rng(1).standard_normal((10, 3))
    exact = np.linalg.solve((np.eye(3) + A).T, y.T).T
    assert np.max(np.abs(fixed_point(linear, y, c, A) - exact)) <= 1e-11 * np.max(np.abs(exact))


@pytest.mark.parametrize("c", [0.3, 0.9, 0.99])
def test_steps_stay_within_the_a_priori_count(c):
    A = contraction(c)
    y = np.random.default_rng(2).standard_normal((10, 3))
    _, steps = banach_iterate(lambda x: y - x @ A, y, c)
    first = np.linalg.norm(y @ A, axis=1)                     # |x_1 - x_0| = |g(y)|
    scale = 1e-12 * np.maximum(1, np.linalg.norm(y, axis=1))
    assert steps <= np.max(np.ceil(np.log(scale * (1 - c) / first) / np.log(c)))


def test_gradients_are_the_implicit_function_theorem_ones():
    c = 0.9
    A = contraction(c)
    y = np.random.default_rng(3).standard_normal((4, 3))
    weights = np.random.default_rng(4).standard_normal((4, 3))
    loss = lambda y, A: anp.sum(weights * fixed_point(linear, y, c, A))
    inverse = np.linalg.inv(np.eye(3) + A)
    a = weights @ inverse.T                                    # x_bar (I + A)^-T, rows: a = x_bar - a A^T
    assert np.allclose(grad(loss, 0)(y, A), a, rtol=0, atol=1e-10)
    x = y @ inverse
    assert np.allclose(grad(loss, 1)(y, A), -x.T @ a, rtol=0, atol=1e-10)

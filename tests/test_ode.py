"""ode.odeint: each method's global error falls at its order, the solution is differentiable
(autograd against the exact derivative and finite differences), a tuple state is integrated as
its parts, integrating backward undoes a forward solve up to the method's error, bad input raises.

Two ODEs with known solutions:
    rotation:  dx/dt = x A^T, A = [[0, -1], [1, 0]],  x(t) = x0 R(t)^T, R(t) = [[cos t, -sin t], [sin t, cos t]]
    decay:     dx/dt = -t x,                          x(t) = x0 exp(-(t^2 - t0^2) / 2)
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from tinyflow.ode import odeint

A = np.array([[0.0, -1.0], [1.0, 0.0]])
X0 = np.array([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.1]])
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}


def rotation(x, t):
    return anp.dot(x, A.T)


def rotated(x0, t):
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return x0 @ R.T


def decay(x, t):
    return -t * x


def observed_orders(method, f, exact, steps=(16, 32, 64, 128)):
    """log2(error at n steps / error at 2n): the order p if the error is C h^p."""
    errors = np.array([np.abs(odeint(f, X0, 0.0, 2.0, n, method) - exact).max() for n in steps])
    return np.log2(errors[:-1] / errors[1:])


@pytest.mark.parametrize("method", ORDERS)
def test_global_error_falls_at_the_methods_order_on_a_rotation(method):
    # measured: euler 1.08, 1.04, 1.02; midpoint 2.04, 2.02, 2.01; rk4 4.04, 4.02, 4.01
    assert np.allclose(observed_orders(method, rotation, rotated(X0, 2.0)), ORDERS[method], atol=0.1)


@pytest.mark.parametrize("method", ORDERS)
def test_global_error_falls_at_the_methods_order_on_a_time_dependent_decay(method):
    assert np.allclose(observed_orders(method, decay, X0 * np.exp(-2.0)), ORDERS[method], atol=0.1)


def test_rk4_is_accurate_to_1e_9_in_128_steps():
    assert np.abs(odeint(rotation, X0, 0.0, 2.0, 128) - rotated(X0, 2.0)).max() < 1e-8


def test_tuple_state_is_integrated_as_its_parts():
    # (x, a) with da/dt = sum of x's entries: a(t) = integral of the decaying x
    x, a = odeint(lambda s, t: (decay(s[0], t), anp.sum(s[0], axis=1)), (X0, np.zeros(3)), 0.0, 2.0, 200)
    assert np.abs(x - odeint(decay, X0, 0.0, 2.0, 200)).max() == 0.0
    integral = np.sqrt(np.pi / 2) * 0.9544997361036416          # int_0^2 exp(-t^2/2) dt = sqrt(pi/2) erf(sqrt 2)
    assert np.abs(a - X0.sum(axis=1) * integral).max() < 1e-9


ROUND_TRIP_ORDERS = {"euler": 1, "midpoint": 3, "rk4": 5}


@pytest.mark.parametrize("method", ORDERS)
def test_backward_solve_undoes_forward_at_order_p_or_p_plus_1(method):
    # One step's error is C h^(p+1) + O(h^(p+2)); the backward step's leading term is C (-h)^(p+1),
    # which cancels the forward one when p is even: a round trip errs at O(h^(p+1)) for midpoint and
    # RK4, O(h^p) for Euler. Measured: 0.99, 3.00, 4.99.
    errors = [np.abs(odeint(decay, odeint(decay, X0, 0.5, 1.5, n, method), 1.5, 0.5, n, method) - X0).max()
              for n in (20, 40)]
    assert np.log2(errors[0] / errors[1]) == pytest.approx(ROUND_TRIP_ORDERS[method], abs=0.1)


def test_path_lists_every_step_and_ends_at_the_solution():
    path = odeint(rotation, X0, 0.0, 1.0, 8, path=True)
    assert len(path) == 9 and path[0] is X0
    assert np.array_equal(path[-1], odeint(rotation, X0, 0.0, 1.0, 8))
    assert np.abs(path[4] - rotated(X0, 0.5)).max() < 1e-5          # RK4 at h = 1/8


def test_gradient_of_the_solution_matches_the_exact_derivative():
    # x(1) = x0 exp(-1/2): d sum x(1) / d x0 = exp(-1/2); RK4 at 100 steps errs by ~1e-11
    g = grad(lambda x0: anp.sum(odeint(decay, x0, 0.0, 1.0, 100)))(X0)
    assert np.abs(g - np.exp(-0.5)).max() < 1e-10


def test_gradient_through_the_solver_matches_finite_differences():
    # a parameter the field closes over: dx/dt = -theta t x, differentiated with respect to theta
    def solution(theta):
        return anp.sum(odeint(lambda x, t: -theta * t * anp.sin(x), X0, 0.0, 1.0, 10) ** 2)
    h = 1e-5
    numerical = (solution(0.7 + h) - solution(0.7 - h)) / (2 * h)
    assert grad(solution)(0.7) == pytest.approx(numerical, abs=1e-8)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "rk45"}, ValueError, "method must be one of"),
    ({"num_steps": 0}, ValueError, "num_steps must be an int >= 1"),
    ({"num_steps": 2.5}, ValueError, "num_steps must be an int >= 1"),
    ({"t1": np.inf}, ValueError, "t1 must be a finite number"),
    ({"t0": "0"}, ValueError, "t0 must be a finite number"),
    ({"f": None}, TypeError, "f must be a function"),
    ({"f": lambda x, t: x[:, :1]}, ValueError, r"f\(x, t\) must return dx/dt with the state's shape \(3, 2\), got \(3, 1\)"),
    ({"f": lambda s, t: (s[0], s[1][:, None]), "x0": (X0, np.zeros(3))}, ValueError,
     r"the state's shape \(\(3, 2\), \(3,\)\), got \(\(3, 2\), \(3, 1\)\)"),
    ({"x0": np.array([[1.0, np.nan], [0.0, 1.0]])}, ValueError, r"x0 must be finite .* 1 NaN or inf entries of 4"),
    ({"f": lambda s, t: s, "x0": (X0, np.array([np.inf, 0.0, 0.0]))}, ValueError, r"x0\[1\] must be finite"),
    ({"x0": "a"}, TypeError, "x0 must be an array of numbers"),
])
def test_bad_input_raises_an_error_naming_the_expectation(kwargs, error, match):
    args = {"f": rotation, "x0": X0, "t0": 0.0, "t1": 1.0, "num_steps": 4, **kwargs}
    with pytest.raises(error, match=match):
        odeint(**args)

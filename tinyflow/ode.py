"""Fixed-step solvers for dx/dt = f(x, t): Euler, midpoint and classical Runge-Kutta (RK4).

With step h = (t1 - t0) / num_steps and t_k = t0 + k h, one step from x_k = x(t_k):

    euler:     x_k+1 = x_k + h f(x_k, t_k)                                    error per unit time O(h)
    midpoint:  x_k+1 = x_k + h f(x_k + h/2 f(x_k, t_k), t_k + h/2)            O(h^2)
    rk4:       k1 = f(x_k, t_k)               k2 = f(x_k + h/2 k1, t_k + h/2)
               k3 = f(x_k + h/2 k2, t_k + h/2)  k4 = f(x_k + h k3, t_k + h)
               x_k+1 = x_k + h/6 (k1 + 2 k2 + 2 k3 + k4)                      O(h^4)

The error at t1 (the global error) is of the order shown: halve h and Euler's halves, RK4's falls
16-fold. t1 < t0 is allowed (h < 0): that integrates backward in time, which is how a continuous
flow evaluates a density.

The state x is an array (N, D), or a tuple of arrays integrated together, e.g. (x, log_det) with
f returning (dx/dt, dlog_det/dt): an "augmented state", as the instantaneous change of variables
needs. Every step is plain autograd.numpy arithmetic, so autograd differentiates the solution
with respect to x0 and to any parameters f closes over ("discretise-then-optimise": the gradient
of the computed solution, exact to rounding, not of the true one). Its memory grows with
num_steps: every intermediate is kept for the backward pass.

odeint checks what a solver would otherwise carry through silently: x0 must be finite (a NaN
start gives a NaN solution), and f must return dx/dt with x's shapes (an (N, 1) velocity for an
(N, 2) state would broadcast into a wrong answer without an error).

Copy with: ode.py (and an empty __init__.py).
"""
import numpy as onp
from autograd.tracer import getval

METHODS = ("euler", "midpoint", "rk4")


def _plus(x, *terms):
    """x + sum_j c_j k_j for terms (c_j, k_j), on an array or, entry by entry, on a tuple of arrays."""
    if isinstance(x, tuple):
        return tuple(_plus(x_i, *[(c, k[i]) for c, k in terms]) for i, x_i in enumerate(x))
    for c, k in terms:
        x = x + c * k
    return x


def euler_step(f, x, t, h):
    return _plus(x, (h, f(x, t)))


def midpoint_step(f, x, t, h):
    k1 = f(x, t)
    return _plus(x, (h, f(_plus(x, (h / 2, k1)), t + h / 2)))


def rk4_step(f, x, t, h):
    k1 = f(x, t)
    k2 = f(_plus(x, (h / 2, k1)), t + h / 2)
    k3 = f(_plus(x, (h / 2, k2)), t + h / 2)
    k4 = f(_plus(x, (h, k3)), t + h)
    return _plus(x, (h / 6, k1), (h / 3, k2), (h / 3, k3), (h / 6, k4))


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "rk4": rk4_step}


def odeint(f, x0, t0, t1, num_steps, method="rk4", path=False):
    """x(t1) for dx/dt = f(x, t), x(t0) = x0, in num_steps equal steps of the chosen method.

    f(x, t) -> dx/dt with x's structure (an array, or a tuple of arrays); t is a Python float.
    path=True returns [x(t0), x(t0 + h), ..., x(t1)] (num_steps + 1 states) instead.
    """
    if not callable(f):
        raise TypeError(f"f must be a function f(x, t) -> dx/dt, got {type(f).__name__}")
    if method not in STEPS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, onp.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
    for name, value in (("t0", t0), ("t1", t1)):
        if isinstance(value, bool) or not isinstance(value, (int, float, onp.integer, onp.floating)) \
                or not onp.isfinite(value):
            raise ValueError(f"{name} must be a finite number (a time), got {value!r}")
    _check_start(x0)
    step, h = STEPS[method], (float(t1) - float(t0)) / num_steps
    x, states = x0, [x0]
    for k in range(int(num_steps)):
        x = step(_shape_checked(f), x, float(t0) + k * h, h)   # t_k = t0 + k h, not h added k times: no drift
        if path:
            states.append(x)
    return states if path else x


def _shapes(x):
    """x's shape, or the tuple of its parts' shapes (values under autograd are read through getval)."""
    return tuple(_shapes(x_i) for x_i in x) if isinstance(x, tuple) else onp.shape(getval(x))


def _check_start(x0):
    """x0 an array of finite numbers, or a tuple of them."""
    for i, part in enumerate(x0 if isinstance(x0, tuple) else (x0,)):
        name = f"x0[{i}]" if isinstance(x0, tuple) else "x0"
        try:
            value = onp.asarray(getval(part), dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of numbers (the state at t0), got {type(part).__name__}") from None
        if not onp.all(onp.isfinite(value)):
            bad = int(onp.sum(~onp.isfinite(value)))
            raise ValueError(f"{name} must be finite (the state at t0), got {bad} NaN or inf entries of {value.size}: "
                             "the solver would carry them to every later state")


def _shape_checked(f):
    """f, with its output's shapes compared to the state's at every call."""
    def f_checked(x, t):
        dx = f(x, t)
        if _shapes(dx) != _shapes(x):
            raise ValueError(f"f(x, t) must return dx/dt with the state's shape {_shapes(x)}, got {_shapes(dx)} "
                             "(the solver would broadcast it into a wrong solution)")
        return dx
    return f_checked

"""A continuous-time flow (neural ODE; Chen et al. 2018, FFJORD: Grathwohl et al. 2019).

A time-dependent vector field v(x, t), an MLP on [x, t] with tanh hidden layers, carries the base
to the data between t = 0 and t = 1:

    dx/dt = v(x, t),   x(0) = z ~ base,   x = x(1)
    d log p(x(t), t) / dt = -div v(x(t), t),   div v = trace(dv/dx) = sum_i dv_i/dx_i

The second line is the instantaneous change of variables, the limit of many residual layers
x + h v(x, t), whose log|det| is log det(I + h dv/dx) = h trace(dv/dx) + O(h^2). So

    forward (sample):   integrate (x, a) from t = 0 to 1, dx/dt = v, da/dt = div v, from (z, 0):
                        log|det dx/dz| = a(1),  log q(x) = log p_base(z) - a(1)
    inverse (density):  the same ODE from t = 1 back to 0, from (x, 0): z = x(0), a(0) = -a(1),
                        log q(x) = log p_base(z) + a(0)

solved by ode.odeint with num_steps fixed steps ("rk4", "midpoint" or "euler"). The map is
invertible only up to the solver's error, O(h^4) for RK4: inverse(forward(z)) is z to that error,
and log q is the density of the exact ODE's map, not of the computed one, to the same order.

div v exactly: the Jacobian carried forward through the layers (forward-mode differentiation
written out). With h_1 = tanh(x W_1x + t w_1t + b_1), s_l = 1 - h_l^2 (tanh' read off h_l),
h_l = tanh(h_l-1 W_l + b_l), v = h_L W_out + b_out:

    dh_1/dx_i = W_1x[i] * s_1,   dh_l/dx_i = (dh_l-1/dx_i W_l) * s_l,   dv_i/dx_i = dh_L/dx_i . W_out[:, i]

D directions per point, so about D forward passes in cost. One hidden layer gives the closed form
div v = sum_k s_1k c_k with c_k = sum_i W_1x[i, k] W_out[k, i], and two give one too (field_backprop.py
derives it): one matrix product whatever D. divergence_plain below writes the tangent form with
autograd.numpy, the readable reference; the solves use field_backprop.py, which computes the same
(closed form where there is one) with v as one autograd primitive.
Hutchinson's estimator (1989, used by FFJORD) replaces the D basis directions by one random probe
eps with E[eps eps^T] = I: div v ~ eps^T (dv/dx) eps, unbiased, one pass. Pass the probes as
`noise` (N, D) (e.g. rng.choice([-1.0, 1.0], (N, D)), Rademacher); the same eps is used at every
step of a solve, so the estimate of log q is unbiased too.

params = {"base": base params, "field": the MLP pytree (mlp.py), sizes [D + 1, *hidden, D]}; the
last layer starts at zero, so the flow starts as the identity map (v = 0, q = base).
Shapes: x, z (N, D); t a number or (N,); log q, log_det, div (N,).

Copy with: continuous.py, columns.py, field_backprop.py, leaves.py, linear.py, memory.py, mlp.py, ode.py, threads.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from . import memory, threads
from .columns import concat_columns
from .field_backprop import velocity_and_divergence
from .linear import dense
from .mlp import dense_tanh, mlp_init
from .ode import METHODS, odeint
from .validate import check_count, check_hidden, check_points, check_rng

CHUNK = 4096    # points per solve: a bigger batch's (N D, H) tangents spill out of the CPU's cache


class ContinuousFlow:
    """base: a distribution such as StandardNormal(D); hidden: the MLP's hidden widths (tanh, so v
    is smooth); num_steps, method: the ODE solver (ode.py) used by every solve."""

    def __init__(self, base, hidden=(64, 64), num_steps=20, method="rk4"):
        if not hasattr(base, "dim") or not callable(getattr(base, "log_prob", None)):
            raise TypeError(f"base must be a distribution such as StandardNormal(dim), got {type(base).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        self.base, self.dim, self.method = base, base.dim, method
        self.hidden = check_hidden(hidden)
        self.num_steps = check_count(num_steps, "num_steps")
        memory.keep_freed_memory()          # as Flow: any training loop over this flow runs fast
        threads.one_blas_thread()

    def init(self, rng):
        check_rng(rng)
        return {"base": self.base.init(rng), "field": mlp_init(rng, [self.dim + 1, *self.hidden, self.dim])}

    def velocity(self, params, x, t):
        """v(x, t): x (N, D), t a number or (N,) -> (N, D)."""
        return _network(self._weights(params), check_points(x, self.dim), t)[1]

    def divergence(self, params, x, t, noise=None):
        """div v(x, t) exactly (N,), or Hutchinson's estimate eps^T (dv/dx) eps with probes noise (N, D)."""
        x = check_points(x, self.dim)
        return velocity_and_divergence(self._weights(params), x, t, self._probes(noise, x))[1]

    def forward(self, params, z, noise=None):
        """x = x(1) from x(0) = z, and log|det dx/dz| = integral_0^1 div v dt: (N, D) -> ((N, D), (N,))."""
        return self._solve(params, check_points(z, self.dim, "z"), 0.0, 1.0, noise)

    def inverse(self, params, x, noise=None):
        """z = x(0) from x(1) = x, and log|det dz/dx| = -integral_0^1 div v dt."""
        return self._solve(params, check_points(x, self.dim), 1.0, 0.0, noise)

    def log_prob(self, params, x, noise=None):
        """log q(x) (N,): exact divergence, or Hutchinson's unbiased estimate with probes noise (N, D)."""
        z, log_det = self.inverse(params, x, noise)
        return self.base.log_prob(params["base"], z) + log_det

    def sample(self, params, rng, n):
        """x (n, D): base draws carried along v alone (no divergence: about D + 1 times cheaper)."""
        weights = self._weights(params)
        z = self.base.sample(params["base"], rng, n)
        return odeint(lambda x, t: _network(weights, x, t)[1], z, 0.0, 1.0, self.num_steps, self.method)

    def sample_from_noise(self, params, eps):
        """Reparameterised sample: eps ~ N(0, I) (N, D) -> (x, log q(x)), differentiable in params."""
        z = self.base.from_noise(params["base"], check_points(eps, self.dim, "eps"))
        x, log_det = self.forward(params, z)
        return x, self.base.log_prob(params["base"], z) - log_det

    def sample_and_log_prob(self, params, rng, n):
        """(x, log q(x)) in one forward solve."""
        return self.sample_from_noise(params, check_rng(rng).standard_normal((check_count(n), self.dim)))

    def trace(self, params, points, inverse=False):
        """The points after every solver step, [z, x(h), ..., x(1)] (num_steps + 1 arrays (N, D)), or
        with inverse=True from data back to the base: particle paths."""
        weights = self._weights(params)
        t0, t1 = (1.0, 0.0) if inverse else (0.0, 1.0)
        return odeint(lambda x, t: _network(weights, x, t)[1], check_points(points, self.dim), t0, t1,
                      self.num_steps, self.method, path=True)

    def _solve(self, params, x, t0, t1, noise):
        """(x(t1), integral from t0 to t1 of div v dt), solving for x and the integral together."""
        weights, eps = self._weights(params), self._probes(noise, x)

        def solve(x, eps):
            return odeint(lambda state, t: velocity_and_divergence(weights, state[0], t, eps),
                          (x, np.zeros(len(x))), t0, t1, self.num_steps, self.method)
        if len(x) <= CHUNK:
            return solve(x, eps)
        parts = [solve(x[i:i + CHUNK], None if eps is None else eps[i:i + CHUNK])   # 2.2x faster at 20,000
                 for i in range(0, len(x), CHUNK)]                                   # points than in one piece
        return np.concatenate([x for x, _ in parts]), np.concatenate([a for _, a in parts])

    def _weights(self, params):
        """[(W, b) per layer] read out of params once per solve, not at every step: inside autograd
        each lookup in the nested params costs a copy of the whole container on the backward pass."""
        try:
            field, _ = params["field"], params["base"]
            weights = [(layer["W"], layer["b"]) for layer in field]
        except (KeyError, IndexError, TypeError):
            raise TypeError("params must be the dict this flow's init returned, {'base': ..., 'field': "
                            f"[{len(self.hidden) + 1} layers of {{'W', 'b'}}]}}") from None
        if len(weights) != len(self.hidden) + 1:
            raise ValueError(f"params['field'] must have {len(self.hidden) + 1} layers (hidden={self.hidden}), "
                             f"got {len(weights)}: are these the params of another flow?")
        return weights

    def _probes(self, noise, x):
        if noise is None:
            return None
        noise = check_points(noise, self.dim, "noise")
        if len(noise) != len(x):
            raise ValueError(f"noise must have one probe per point, shape ({len(x)}, {self.dim}), got {noise.shape}")
        return noise


def _network(weights, x, t):
    """The hidden activations [h_1, ..., h_L] of the MLP on [x, t] and its output v (N, D)."""
    t_column = np.zeros((len(x), 1)) + np.reshape(t, (-1, 1))        # a number or (N,) -> (N, 1)
    h, hidden = concat_columns(x, t_column), []
    for W, b in weights[:-1]:
        h = dense_tanh(h, W, b)
        hidden.append(h)
    W_out, b_out = weights[-1]
    return hidden, dense(h, W_out, b_out)


def divergence_plain(weights, hidden, eps=None):
    """trace(dv/dx) (N,) carried forward through the layers; or, given probes eps (N, D), eps^T (dv/dx) eps.
    The readable version: field_backprop.py computes the same (with v) as one autograd primitive."""
    dim = weights[-1][0].shape[1]
    W_x = weights[0][0][:dim]                                        # (D, H_1): x's rows of W_1, not t's
    if eps is None:
        J = W_x * (1 - hidden[0] ** 2)[:, None, :]                   # (N, D, H_1): row i is dh_1/dx_i
        for (W, _), h in zip(weights[1:-1], hidden[1:]):
            n, d, width = J.shape                                    # one (N D, H) product, not N small ones
            J = np.reshape(np.dot(np.reshape(J, (n * d, width)), W), (n, d, -1)) * (1 - h ** 2)[:, None, :]
        return np.sum(J * weights[-1][0].T, axis=(1, 2))             # sum_i dh_L/dx_i . W_out[:, i]
    g = np.dot(eps, W_x) * (1 - hidden[0] ** 2)                      # (N, H_1): dh_1 in the direction eps
    for (W, _), h in zip(weights[1:-1], hidden[1:]):
        g = np.dot(g, W) * (1 - h ** 2)
    return np.sum(np.dot(g, weights[-1][0]) * eps, axis=1)          # eps . (dv/dx eps)

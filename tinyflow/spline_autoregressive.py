"""Autoregressive neural spline flow (Durkan, Bekasov, Murray & Papamakarios 2019) with a MADE
conditioner, in the IAF direction; Invert(SplineAutoregressive()) is the MAF, as for
AffineAutoregressive.

    forward (sample, one pass):   y_i = g(z_i; theta_i(z_<i))
    inverse (density, D passes):  z_i = g^-1(y_i; theta_i(z_<i))
    log|det dy/dz| = sum_i log g'(z_i; theta_i(z_<i))      (dy/dz is lower-triangular)

g is the rational-quadratic spline of spline.py (identity outside [-B, B]); theta_i is K width
logits, K height logits and K - 1 derivative logits, 3K - 1 output channels of one MADE network.
As in autoregressive.py, the inverse makes coordinate i exact on pass i. The MADE's last layer
starts at zero, so theta = 0 and the layer starts as the identity.

Conditional (context_dim=C): theta also sees a context c (N, C) through every hidden unit of the
MADE's first layer (made.py), as in autoregressive.py. forward(params, z, context),
inverse(params, y, context).

Shapes: z, y (N, D); log_det (N,); params: MADE pytree with sizes [D (+ C), *hidden, (3K - 1) D].

Copy with: spline_autoregressive.py, columns.py, leaves.py, linear.py, made.py, mlp.py, spline.py, spline_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .columns import concat_columns
from .leaves import shapes
from .made import made, made_fused, made_masks
from .mlp import mlp_init
from .spline import check_num_bins
from .spline_backprop import rational_quadratic
from .validate import check_context, check_context_dim, check_dim, check_hidden, check_points, check_positive, given


class SplineAutoregressive:
    def __init__(self, hidden=(64,), num_bins=8, bound=3.0, context_dim=0):
        self.hidden, self.num_bins = check_hidden(hidden), check_num_bins(num_bins)
        self.bound = check_positive(bound, "bound")
        self.context_dim = check_context_dim(context_dim)
        self._masks = {}                       # MADE masks by dim: fixed, so built once

    def masks(self, dim):
        if dim not in self._masks:
            self._masks[dim] = made_masks(dim, self.hidden, 3 * self.num_bins - 1, self.context_dim)
        return self._masks[dim]

    def init(self, rng, dim):
        dim = check_dim(dim)
        self.masks(dim)
        return mlp_init(rng, [dim + self.context_dim, *self.hidden, (3 * self.num_bins - 1) * dim])

    def theta(self, params, z, context=None, fused=False):
        """The conditioner: z (N, D) [and context (N, C)] -> theta (N, D, 3K - 1), where row i
        depends on z_<i (and the context) only. Channel c of output i is MADE column c D + i
        (made.py), hence the transpose. fused: the MADE as one autograd node, the same numbers."""
        n, dim = z.shape
        x = z if context is None else concat_columns(z, context)
        h = (made_fused if fused else made)(params, self.masks(dim), x)
        h = np.reshape(h, (n, 3 * self.num_bins - 1, dim))
        return np.transpose(h, (0, 2, 1))

    def _check(self, params, x, context, name):
        x = check_points(x, shapes(params)[0][0] - self.context_dim, name)   # W_1 (n_in, n_1), not read
        return x, check_context(context, self.context_dim, len(x), self)

    def forward(self, params, z, context=None):
        z, context = self._check(params, z, context, "z")
        y, log_det = rational_quadratic(z, self.theta(params, z, *given(context), fused=True), self.bound, False)
        return y, np.sum(log_det, axis=1)

    def inverse(self, params, y, context=None):
        y, context = self._check(params, y, context, "y")
        z = y
        for _ in range(y.shape[1]):           # pass i fixes coordinate i
            z, log_det = rational_quadratic(y, self.theta(params, z, *given(context)), self.bound, True)
        return z, np.sum(log_det, axis=1)

"""Neural spline coupling (Durkan, Bekasov, Murray & Papamakarios 2019): RealNVP's coupling with
a rational-quadratic spline (spline.py) in place of the affine map.

The mask splits x into a kept part x_a (mask == 1) and a changed part x_b (mask == 0):

    y_a = x_a
    y_b = g(x_b; theta(x_a))          g: a monotone spline per coordinate, identity outside [-B, B]
    x_b = g^-1(y_b; theta(y_a))       (y_a = x_a, so theta is recomputed exactly)
    log|det dy/dx| = sum_b log g'(x_b; theta(x_a))

theta(x_a) is one MLP with n_b (3K - 1) outputs: for each changed coordinate, K width logits,
K height logits and K - 1 derivative logits (spline.py). The MLP's last layer starts at zero, so theta = 0
and the layer starts as the identity (spline.py: equal bins, unit slopes), like AffineCoupling.
(nflows instead divides the width and height logits by sqrt(hidden) so a random last layer
starts near uniform bins; a zero last layer starts exactly there and still learns, since the
gradient reaches it through the spline, so no scaling is needed.)

Conditional (context_dim=C): theta also sees a context c (N, C), the MLP's input being [x_a, c],
as in coupling.py. forward(params, x, context), inverse(params, y, context).

Shapes: x, y (N, D); log_det (N,); params: the MLP pytree, sizes [n_a (+ C), *hidden, n_b (3K - 1)].

Copy with: spline_coupling.py, columns.py, leaves.py, linear.py, mlp.py, spline.py, spline_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .columns import concat_columns, merge_columns, take_columns
from .mlp import as_one_node, mlp, mlp_init
from .spline import check_num_bins
from .spline_backprop import rational_quadratic
from .validate import (check_activation, check_context, check_context_dim, check_dim, check_hidden, check_mask,
                       check_points, check_positive, given)


class SplineCoupling:
    """mask: sequence of 0/1 of length D with at least one of each; hidden: MLP widths;
    num_bins K and bound B of the spline; activation "tanh" or "relu" and context_dim, as AffineCoupling."""

    def __init__(self, mask, hidden=(64, 64), num_bins=8, bound=3.0, activation="tanh", context_dim=0):
        self.mask, self.hidden, self.activation = check_mask(mask), check_hidden(hidden), check_activation(activation)
        self.num_bins, self.bound = check_num_bins(num_bins), check_positive(bound, "bound")
        self.context_dim = check_context_dim(context_dim)
        self.index_a = np.flatnonzero(self.mask == 1)              # kept coordinates
        self.index_b = np.flatnonzero(self.mask == 0)              # changed coordinates

    def init(self, rng, dim):
        if check_dim(dim) != len(self.mask):
            raise ValueError(f"mask has length {len(self.mask)} but the flow has dim {dim}")
        return mlp_init(rng, [len(self.index_a) + self.context_dim, *self.hidden, len(self.index_b) * (3 * self.num_bins - 1)])

    def theta(self, params, x_a, context=None):
        """The conditioner: x_a (N, n_a) [and context (N, C)] -> theta (N, n_b, 3K - 1), one spline
        per changed coordinate. In training the MLP runs as one autograd node, mlp.mlp_step: the same numbers."""
        x_in = x_a if context is None else concat_columns(x_a, context)
        h = as_one_node(lambda params, x: mlp(params, x, self.activation), params, x_in, self.activation)
        return np.reshape(h, (h.shape[0], len(self.index_b), 3 * self.num_bins - 1))

    def _apply(self, params, v, context, inverse):
        v = check_points(v, len(self.mask), "y" if inverse else "x")
        context = check_context(context, self.context_dim, len(v), self)
        v_a, v_b = take_columns(v, self.index_a), take_columns(v, self.index_b)
        out_b, log_det = rational_quadratic(v_b, self.theta(params, v_a, *given(context)), self.bound, inverse)
        return merge_columns(v_a, out_b, self.index_a, self.index_b), np.sum(log_det, axis=1)

    def forward(self, params, x, context=None):
        return self._apply(params, x, context, inverse=False)

    def inverse(self, params, y, context=None):
        return self._apply(params, y, context, inverse=True)

"""Fixed permutations and a learnable invertible linear map: the mixing between couplings.

A coupling or autoregressive layer leaves some coordinates alone or treats the first
one specially; mixing between layers lets every coordinate be transformed.

    Reverse():        y = x[:, ::-1]                     log_det = 0
    Permute(order):   y = x[:, order]                    log_det = 0
    LULinear(order):  y = x W^T + b,  W = P L U          log_det = sum(log d) = trace(LU)

LULinear (Kingma & Dhariwal 2018, "Glow"): L unit lower-triangular, U upper-triangular with
diagonal d = exp(log d), P the fixed row permutation given by `order` (identity if None).
Then det W = +-prod d, so log|det W| = sum(log d) costs O(D) instead of O(D^3), and any real
parameters give an invertible W. Like LAPACK's LU, one (D, D) array "LU" holds both factors:

    strictly lower part -> L's below-diagonal entries     diagonal -> log d
    strictly upper part -> U's above-diagonal entries

params: {"LU": (D, D), "b": (D,)}. It starts as W = P (LU = 0: L = U = I).

Copy with: permutation.py, linear.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .linear import lu_linear, lu_log_det, lu_weight
from .validate import check_dim, check_points


def _check_order(order):
    order = np.asarray(order)
    if order.ndim != 1 or order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(len(order))):
        raise ValueError(f"order must be a permutation of 0..D-1, got {order.tolist()}")
    return order


class Reverse:
    def init(self, rng, dim):
        return {}

    def forward(self, params, x):
        x = check_points(x)
        return x[:, ::-1], np.zeros(len(x))

    def inverse(self, params, y):
        return self.forward(params, y)           # reversing is its own inverse


class Permute:
    """order: a permutation of 0..D-1; y[:, i] = x[:, order[i]]."""

    def __init__(self, order):
        self.order = _check_order(order)
        self.inverse_order = np.argsort(self.order)

    def init(self, rng, dim):
        if check_dim(dim) != len(self.order):
            raise ValueError(f"order has length {len(self.order)} but the flow has dim {dim}")
        return {}

    def forward(self, params, x):
        x = check_points(x, len(self.order))
        return x[:, self.order], np.zeros(len(x))

    def inverse(self, params, y):
        y = check_points(y, len(self.order), "y")
        return y[:, self.inverse_order], np.zeros(len(y))


class LULinear:
    def __init__(self, order=None):
        self.order = None if order is None else _check_order(order)

    def init(self, rng, dim):
        dim = check_dim(dim)
        if self.order is not None and len(self.order) != dim:
            raise ValueError(f"order has length {len(self.order)} but the flow has dim {dim}")
        return {"LU": np.zeros((dim, dim)), "b": np.zeros(dim)}

    def weight(self, params):
        """W = P L U, built from the parameters (once per call, shared by all N points)."""
        W = lu_weight(params["LU"])
        return W if self.order is None else W[self.order]

    def forward(self, params, x):
        x = check_points(x, len(params["b"]))
        y = lu_linear(x, params["LU"], params["b"], self.order, False)        # x W^T + b
        return y, lu_log_det(params["LU"], len(x), 1.0)                       # sum(log d), at every point

    def inverse(self, params, y):
        y = check_points(y, len(params["b"]), "y")
        x = lu_linear(y, params["LU"], params["b"], self.order, True)         # (y - b) W^-T
        return x, lu_log_det(params["LU"], len(y), -1.0)

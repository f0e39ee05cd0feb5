"""RealNVP affine coupling (Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP").

The mask splits x into a kept part x_a (mask == 1) and a changed part x_b (mask == 0):

    y_a = x_a
    y_b = x_b * exp(s(x_a)) + t(x_a)          s, t: one MLP with outputs [s_raw, t]
    x_b = (y_b - t(y_a)) * exp(-s(y_a))       (inverse: y_a = x_a, so s and t are recomputed exactly)
    log|det dy/dx| = sum_b s(x_a)             (the Jacobian is triangular once x_a comes first)

Log-scale bound: s = s_max * tanh(s_raw / s_max). This is the identity for small s_raw (so a
zero-initialised MLP starts the layer as the identity) and keeps exp(s) within
[exp(-s_max), exp(s_max)], so one bad step cannot overflow; unlike a hard clip it never
cuts the gradient off.

Conditional (context_dim=C): s and t also see a context c (N, C), the conditioner's input being
[x_a, c]; for each fixed c the layer is a coupling as above, so p(x | c) is a flow in x
(Papamakarios, Pavlakou & Murray 2017; Winkler et al. 2019). forward(params, x, context),
inverse(params, y, context).

Shapes: x, y (N, D); log_det (N,); params: the MLP pytree (see mlp.py), sizes
[n_a (+ C), *hidden, 2 * n_b].

take_columns, merge_columns, soft_clamp, affine and affine_inverse compute exactly the
expressions in their comments; they are autograd primitives with hand-written backprop
(columns.py, affine.py), each one autograd node instead of several (chapter 8: why, and how
much faster a training step gets). forward and inverse below read as that chain; what runs
(unless fused=False, or a subclass brings its own s_t) is the whole layer as one primitive,
coupling_backprop.coupling_step, which computes the same numbers with one node.

Copy with: coupling.py, affine.py, columns.py, coupling_backprop.py, leaves.py, linear.py, mlp.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .affine import affine, affine_inverse, soft_clamp
from .columns import concat_columns, merge_columns, take_columns
from .coupling_backprop import Plan, coupling_step
from .leaves import flat_params, shapes
from .mlp import mlp, mlp_init
from .validate import (check_activation, check_context, check_context_dim, check_dim, check_hidden, check_mask,
                       check_points, check_positive, given)


def alternating_masks(dim, num_layers):
    """[1,0,1,0,...], [0,1,0,1,...], ...: consecutive couplings change complementary halves."""
    first = np.arange(dim) % 2 == 0
    return [(first if k % 2 == 0 else ~first).astype(int) for k in range(num_layers)]


class AffineCoupling:
    """mask: sequence of 0/1 of length D with at least one of each; hidden: MLP widths;
    activation: "tanh" (smooth, the default) or "relu" (cheaper; kinks in s and t);
    context_dim: C to condition on a context of shape (N, C), 0 (the default) for none;
    fused: run as one primitive (the default), or False for the chain of small ones below."""

    def __init__(self, mask, hidden=(64, 64), s_max=5.0, activation="tanh", context_dim=0, fused=True):
        self.mask, self.hidden, self.activation = check_mask(mask), check_hidden(hidden), check_activation(activation)
        self.s_max = check_positive(s_max, "s_max")
        self.context_dim = check_context_dim(context_dim)
        self.index_a = np.flatnonzero(self.mask == 1)              # kept coordinates
        self.index_b = np.flatnonzero(self.mask == 0)              # changed coordinates
        # a subclass that brings its own conditioner s_t runs the chain that calls it
        self.fused = bool(fused) and type(self).s_t is AffineCoupling.s_t
        sizes = (len(self.index_a) + self.context_dim, *self.hidden, 2 * len(self.index_b))
        self.shapes = [shape for n_in, n_out in zip(sizes[:-1], sizes[1:]) for shape in ((n_in, n_out), (n_out,))]
        self.plans = [Plan(self.index_a, self.index_b, sizes, self.s_max, self.activation, inverse) for inverse in (0, 1)]

    def init(self, rng, dim):
        if check_dim(dim) != len(self.mask):
            raise ValueError(f"mask has length {len(self.mask)} but the flow has dim {dim}")
        return mlp_init(rng, [len(self.index_a) + self.context_dim, *self.hidden, 2 * len(self.index_b)])

    def s_t(self, params, x_a, context=None):
        """The conditioner: x_a (N, n_a) [and context (N, C)] -> bounded log-scale s and shift t, each (N, n_b)."""
        h = mlp(params, x_a if context is None else concat_columns(x_a, context), self.activation)
        n_b = len(self.index_b)
        s_raw, t = take_columns(h, slice(0, n_b)), take_columns(h, slice(n_b, 2 * n_b))
        return soft_clamp(s_raw, self.s_max), t

    def forward(self, params, x, context=None):
        x = check_points(x, len(self.mask))
        context = check_context(context, self.context_dim, len(x), self)
        if self.fused:
            return self.step(params, x, context, inverse=False)
        x_a, x_b = take_columns(x, self.index_a), take_columns(x, self.index_b)
        s, t = self.s_t(params, x_a, *given(context))
        y_b = affine(x_b, s, t)                                   # x_b * exp(s) + t
        return merge_columns(x_a, y_b, self.index_a, self.index_b), np.sum(s, axis=1)

    def inverse(self, params, y, context=None):
        y = check_points(y, len(self.mask), "y")
        context = check_context(context, self.context_dim, len(y), self)
        if self.fused:
            return self.step(params, y, context, inverse=True)
        y_a, y_b = take_columns(y, self.index_a), take_columns(y, self.index_b)
        s, t = self.s_t(params, y_a, *given(context))
        x_b = affine_inverse(y_b, s, t)                           # (y_b - t) * exp(-s)
        return merge_columns(y_a, x_b, self.index_a, self.index_b), -np.sum(s, axis=1)

    def step(self, params, v, context, inverse):
        """forward (or inverse) as one primitive: (out, log_det) from coupling_step's (N, D + 1)."""
        if shapes(params) != self.shapes:
            raise ValueError(f"params must hold arrays of shapes {self.shapes} (W, b of each MLP layer), "
                             f"got {shapes(params)}")
        # one vector, W_1, b_1, ... raveled: as params are laid out, unless someone built the dicts as {"b", "W"}
        in_order = all(list(layer) == ["W", "b"] for layer in params)
        weights = flat_params(params) if in_order else np.concatenate(
            [np.ravel(array) for layer in params for array in (layer["W"], layer["b"])])
        out = coupling_step(v, context, weights, self.plans[inverse])
        return take_columns(out, slice(0, len(self.mask))), take_columns(out, len(self.mask))

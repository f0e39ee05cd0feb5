"""Affine autoregressive flow with a MADE conditioner: IAF (Kingma et al. 2016) in the
forward (sampling) direction; Invert(AffineAutoregressive()) is a MAF (Papamakarios et al. 2017).

    forward (sample, one pass):   y_i = mu_i(z_<i) + exp(s_i(z_<i)) * z_i
    inverse (density, D passes):  z_i = (y_i - mu_i(z_<i)) * exp(-s_i(z_<i))
    log|det dy/dz| = sum_i s_i(z_<i)            (dy/dz is lower-triangular in natural order)

mu and s are the two output channels of one MADE network (made.py), so the whole
forward map is a single network evaluation. The inverse must know z_<i before it can
compute z_i: starting from any z, the update z <- (y - mu(z)) * exp(-s(z)) makes
coordinate i exact on pass i, so D passes give the exact inverse.

The log-scale is bounded softly, s = s_max * tanh(s_raw / s_max): identity near zero (a
zero-initialised last layer starts the layer at the identity), never a cut-off gradient,
and a range wide enough that the scale 0.5 of the first-flow tutorial is an easy reach.

Conditional (context_dim=C): mu and s also see a context c (N, C), which enters every hidden
unit of the MADE's first layer (made.py, degree 0), so column i still depends on z_<i only and
for each fixed c the layer is an IAF in z: the conditional MAF of Papamakarios et al. 2017 once
inverted. forward(params, z, context), inverse(params, y, context).

Shapes: z, y (N, D); log_det (N,); params: MADE pytree with sizes [D (+ C), *hidden, 2D].

Copy with: autoregressive.py, affine.py, columns.py, leaves.py, linear.py, made.py, mlp.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .affine import affine, affine_inverse, soft_clamp
from .columns import concat_columns, take_columns
from .leaves import shapes
from .made import made, made_fused, made_masks
from .mlp import mlp_init
from .validate import check_context, check_context_dim, check_dim, check_hidden, check_points, check_positive, given


class AffineAutoregressive:
    def __init__(self, hidden=(64,), s_max=5.0, context_dim=0):
        self.hidden = check_hidden(hidden)
        self.s_max = check_positive(s_max, "s_max")
        self.context_dim = check_context_dim(context_dim)
        self._masks = {}                       # MADE masks by dim: fixed, so built once
        self.fused = type(self).mu_s is AffineAutoregressive.mu_s     # an overridden mu_s runs as written

    def masks(self, dim):
        if dim not in self._masks:
            self._masks[dim] = made_masks(dim, self.hidden, context_dim=self.context_dim)
        return self._masks[dim]

    def init(self, rng, dim):
        dim = check_dim(dim)
        self.masks(dim)
        return mlp_init(rng, [dim + self.context_dim, *self.hidden, 2 * dim])

    def mu_s(self, params, z, context=None, fused=False):
        """The conditioner: z (N, D) [and context (N, C)] -> shift mu (N, D) and bounded log-scale
        s (N, D), where column i depends on z_<i (and the context) only. Override it to try
        another scale parameterisation. fused: the MADE as one autograd node (made.py), the
        same numbers; forward's single pass uses it."""
        dim = z.shape[1]
        x = z if context is None else concat_columns(z, context)
        h = (made_fused if fused else made)(params, self.masks(dim), x)
        mu, s_raw = take_columns(h, slice(0, dim)), take_columns(h, slice(dim, 2 * dim))
        return mu, soft_clamp(s_raw, self.s_max)

    def _check(self, params, x, context, name):
        x = check_points(x, shapes(params)[0][0] - self.context_dim, name)   # W_1 (n_in, n_1), not read
        return x, check_context(context, self.context_dim, len(x), self)

    def forward(self, params, z, context=None):
        z, context = self._check(params, z, context, "z")
        options = {"fused": True} if self.fused else {}     # an overridden mu_s need not take fused=
        mu, s = self.mu_s(params, z, *given(context), **options)
        return affine(z, s, mu), np.sum(s, axis=1)               # mu + exp(s) * z

    def inverse(self, params, y, context=None):
        y, context = self._check(params, y, context, "y")
        z = y
        for _ in range(y.shape[1]):           # pass i fixes coordinate i
            mu, s = self.mu_s(params, z, *given(context))
            z = affine_inverse(y, s, mu)      # (y - mu) * exp(-s)
        return z, -np.sum(s, axis=1)

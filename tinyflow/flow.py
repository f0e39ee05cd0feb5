"""Flow: a base distribution pushed through a list of layers.

    sample:    z ~ base,  x = f_K(... f_1(z))                          (forward through the layers)
    log_prob:  z = f_1^-1(... f_K^-1(x)),
               log q(x) = log p_base(z) + sum_k log|det d f_k^-1 / d input|   (inverse, reversed)

params = {"base": base params, "layers": [params of layer 1, ..., params of layer K]}.
Shapes: x, z (N, D); log q (N,). The log-dets are summed in log space, never multiplied.

A conditional flow q(x | c) has layers built with context_dim=C (the couplings and the
autoregressive layers); every method then takes context=c, of shape (N, C), one row per point,
or a single row ((C,) or (1, C)) shared by all of them. The conditional layers see it, the
others (permutations, LULinear, ...) do not, and for each c the flow is an ordinary flow in x:
    log q(x | c) = log p_base(z) + sum_k log|det d f_k^-1(.; c) / d input|.

Copy with: flow.py, leaves.py, linear.py, memory.py, threads.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp

from . import memory, threads
from .leaves import read_leaves
from .linear import add_all
from .validate import NonFiniteError, check_count, check_points, check_rng, getval


class Flow:
    def __init__(self, base, layers):
        if not hasattr(base, "dim") or not callable(getattr(base, "log_prob", None)):
            raise TypeError(f"base must be a distribution such as StandardNormal(dim), got {type(base).__name__}")
        layers = list(layers)
        for k, layer in enumerate(layers):
            if not all(callable(getattr(layer, name, None)) for name in ("init", "forward", "inverse")):
                raise TypeError(f"layers[{k}] must have init/forward/inverse, got {type(layer).__name__}")
        self.base, self.layers, self.dim = base, layers, base.dim
        self._structures = {}               # layer k -> the shapes of its params, for error messages
        context_dims = {layer.context_dim for layer in layers if getattr(layer, "context_dim", 0)}
        if len(context_dims) > 1:
            raise ValueError(f"the conditional layers of a flow share one context, so one context_dim; "
                             f"got {sorted(context_dims)}")
        self.context_dim = context_dims.pop() if context_dims else 0         # 0: unconditional
        memory.keep_freed_memory()          # any training loop over this flow, fit's or your own,
        threads.one_blas_thread()           # runs fast: see memory.py and threads.py

    def init(self, rng):
        check_rng(rng)
        return {"base": self.base.init(rng),
                "layers": [layer.init(rng, self.dim) for layer in self.layers]}

    def log_prob(self, params, x, context=None):
        z = check_points(x, self.dim)
        context = self._context(context, len(z))
        params = self._checked(params)
        log_dets = [np.zeros(len(z))]
        for k in reversed(range(len(self.layers))):
            z, log_det = self._step(params, k, z, context, inverse=True)
            log_dets.append(log_det)
        return self.base.log_prob(params["base"], z) + add_all(*log_dets)

    def forward(self, params, z, context=None):
        """x = f_K(... f_1(z)) and sum_k log|det d f_k / d input|: (N, D) -> ((N, D), (N,))."""
        x = check_points(z, self.dim, "z")
        context = self._context(context, len(x))
        params = self._checked(params)
        log_dets = [np.zeros(len(x))]
        for k in range(len(self.layers)):
            x, log_det = self._step(params, k, x, context)
            log_dets.append(log_det)
        return x, add_all(*log_dets)

    def _step(self, params, k, points, context=None, inverse=False):
        """Layer k, forward or inverse, on its own params (and the context, if it is conditional).
        Params that do not fit the layer (a checkpoint of a flow built with other settings) raise an
        error showing both structures; a layer that turns finite points into NaN or inf (an
        overflow inside it) raises NonFiniteError naming it, which fit counts as a skipped step."""
        layer = self.layers[k]
        given = (context,) if getattr(layer, "context_dim", 0) else ()
        try:
            out, log_det = (layer.inverse if inverse else layer.forward)(params["layers"][k], points, *given)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            expected, got = self._structure(k), structure(params["layers"][k])
            if expected != got:
                raise ValueError(f"params['layers'][{k}] do not fit layers[{k}] ({type(layer).__name__}): it "
                                 f"expects {expected}, got {got}. Are these the params of another flow (a "
                                 f"checkpoint saved from a flow built with other settings)? Pass the params "
                                 f"this flow's init returned, or build the flow as it was when they were "
                                 f"saved.") from error
            raise
        if not (onp.isfinite(getval(out)).all() and onp.isfinite(getval(log_det)).all()):
            raise NonFiniteError(f"layers[{k}] ({type(layer).__name__}) {'inverse' if inverse else 'forward'} "
                                 f"gave NaN or inf from finite points: an overflow inside the layer (points or "
                                 f"parameters too large for it)")
        return out, log_det

    def _structure(self, k):
        """The shapes layer k's init gives (a plan of the params it expects), computed once."""
        if k not in self._structures:
            self._structures[k] = structure(self.layers[k].init(onp.random.default_rng(0), self.dim))
        return self._structures[k]

    def _context(self, context, n):
        """The context as an (n, C) array, a single row repeated n times; None for an
        unconditional flow. With C = 1 a number or an (n,) array (one value per point) will do.
        A missing context, or one this flow has no use for, is an error."""
        if not self.context_dim:
            if context is not None:
                raise ValueError("this flow takes no context: none of its layers was built with context_dim")
            return None
        if context is None:
            raise ValueError(f"this flow is conditional (context_dim={self.context_dim}): pass context= of "
                             f"shape (N, {self.context_dim}), one row per point, or ({self.context_dim},) for all")
        shape = onp.shape(getval(context))
        if len(shape) == 0 and self.context_dim == 1:
            context = np.reshape(context, (1, 1))                          # one number, for every point
        elif len(shape) == 1:                                              # one row, or with C = 1 one
            one_per_point = self.context_dim == 1 and shape[0] == n > 1   # value per point
            context = np.reshape(context, (-1, 1) if one_per_point else (1, -1))
        elif len(shape) != 2:
            raise ValueError(f"context must be (N, {self.context_dim}), one row per point, or one row "
                             f"({self.context_dim},), got shape {shape}")
        context = check_points(context, self.context_dim, "context")
        rows = getval(context).shape[0]
        if rows == 1 and n > 1:
            context = np.repeat(context, n, axis=0)
        elif rows != n:
            raise ValueError(f"context must have one row per point ({n}) or a single row, got shape "
                             f"{getval(context).shape}")
        return context

    def _checked(self, params):
        """params, checked against this flow's structure and, inside autograd, read as cheap
        leaves of one flat vector (leaves.py: what that saves a hand-written training loop)."""
        self._check_params(params)
        return read_leaves(params)

    def _check_params(self, params):
        try:
            layers, _ = params["layers"], params["base"]
            count = len(layers)
        except (KeyError, IndexError, TypeError):
            raise TypeError(f"params must be the dict this flow's init returned, {{'base': ..., 'layers': "
                            f"[{len(self.layers)} entries, one per layer]}}; got {_describe(params)}") from None
        if count != len(self.layers):
            raise ValueError(f"params['layers'] must have one entry per layer ({len(self.layers)}), "
                             f"got {count}: are these the params of another flow?")

    def sample(self, params, rng, n, context=None):
        """n samples (n, D); a conditional flow draws sample i given context row i (or all given one row)."""
        params = self._checked(params)
        context = self._context(context, check_count(n))
        return self.forward(params, self.base.sample(params["base"], rng, n), context)[0]

    def sample_from_noise(self, params, eps, context=None):
        """Reparameterised sample: eps ~ N(0, I) (N, D) -> (x, log q(x)). Differentiable in params,
        which is what reverse-KL training needs."""
        params = self._checked(params)
        z = self.base.from_noise(params["base"], check_points(eps, self.dim, "eps"))
        x, log_det = self.forward(params, z, context)
        return x, self.base.log_prob(params["base"], z) - log_det

    def sample_and_log_prob(self, params, rng, n, context=None):
        """(x, log q(x)) in one forward pass: the IAF direction, no inverse needed."""
        eps = check_rng(rng).standard_normal((check_count(n), self.dim))
        return self.sample_from_noise(params, eps, context)

    def trace(self, params, points, inverse=False, context=None):
        """The points after every layer: [z, f_1(z), ..., x] (or, with inverse=True, starting from
        data x: [x, f_K^-1(x), ..., z]). A list of K + 1 arrays of shape (N, D)."""
        points = check_points(points, self.dim)
        context = self._context(context, len(points))
        params = self._checked(params)
        steps = [points]
        for k in (reversed(range(len(self.layers))) if inverse else range(len(self.layers))):
            steps.append(self._step(params, k, steps[-1], context, inverse)[0])
        return steps


def structure(tree):
    """The shapes of a params pytree, as a printable plan: {'W': (1, 64), ...}, [..]."""
    if isinstance(tree, dict):
        return {key: structure(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [structure(value) for value in tree]
    return onp.shape(getval(tree))


def _describe(value):
    """A short account of a wrong params value: its type, and its keys or length."""
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"a {type(value).__name__}"

"""Flow: a base distribution pushed through a list of layers.

    sample:    z ~ base,  x = f_K(... f_1(z))                          (forward through the layers)
    log_prob:  z = f_1^-1(... f_K^-1(x)),
               log q(x) = log p_base(z) + sum_k log|det d f_k^-1 / d input|   (inverse, reversed)

params = {"base": base params, "layers": [params of layer 1, ..., params of layer K]}.
Shapes: x, z (N, D); log q (N,). The log-dets are summed in log space, never multiplied.
"""
import autograd.numpy as np

from .linear import add_all
from .validate import check_count, check_points, check_rng


class Flow:
    def __init__(self, base, layers):
        if not hasattr(base, "dim") or not callable(getattr(base, "log_prob", None)):
            raise TypeError(f"base must be a distribution such as StandardNormal(dim), got {type(base).__name__}")
        layers = list(layers)
        for k, layer in enumerate(layers):
            if not all(callable(getattr(layer, name, None)) for name in ("init", "forward", "inverse")):
                raise TypeError(f"layers[{k}] must have init/forward/inverse, got {type(layer).__name__}")
        self.base, self.layers, self.dim = base, layers, base.dim

    def init(self, rng):
        check_rng(rng)
        return {"base": self.base.init(rng),
                "layers": [layer.init(rng, self.dim) for layer in self.layers]}

    def log_prob(self, params, x):
        z = check_points(x, self.dim)
        log_dets = [np.zeros(len(z))]
        for layer, p in zip(reversed(self.layers), reversed(params["layers"])):
            z, log_det = layer.inverse(p, z)
            log_dets.append(log_det)
        return self.base.log_prob(params["base"], z) + add_all(*log_dets)

    def forward(self, params, z):
        """x = f_K(... f_1(z)) and sum_k log|det d f_k / d input|: (N, D) -> ((N, D), (N,))."""
        x = check_points(z, self.dim, "z")
        log_dets = [np.zeros(len(x))]
        for layer, p in zip(self.layers, params["layers"]):
            x, log_det = layer.forward(p, x)
            log_dets.append(log_det)
        return x, add_all(*log_dets)

    def sample(self, params, rng, n):
        return self.forward(params, self.base.sample(params["base"], rng, n))[0]

    def sample_from_noise(self, params, eps):
        """Reparameterised sample: eps ~ N(0, I) (N, D) -> (x, log q(x)). Differentiable in params,
        which is what reverse-KL training needs."""
        z = self.base.from_noise(params["base"], check_points(eps, self.dim, "eps"))
        x, log_det = self.forward(params, z)
        return x, self.base.log_prob(params["base"], z) - log_det

    def sample_and_log_prob(self, params, rng, n):
        """(x, log q(x)) in one forward pass: the IAF direction, no inverse needed."""
        return self.sample_from_noise(params, check_rng(rng).standard_normal((check_count(n), self.dim)))

    def trace(self, params, points, inverse=False):
        """The points after every layer: [z, f_1(z), ..., x] (or, with inverse=True, starting from
        data x: [x, f_K^-1(x), ..., z]). A list of K + 1 arrays of shape (N, D)."""
        points = check_points(points, self.dim)
        pairs = list(zip(self.layers, params["layers"]))
        steps = [points]
        for layer, p in (reversed(pairs) if inverse else pairs):
            step = layer.inverse if inverse else layer.forward
            steps.append(step(p, steps[-1])[0])
        return steps

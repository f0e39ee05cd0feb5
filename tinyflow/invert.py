"""Invert(layer): the same bijection used the other way round.

    Invert(f).forward = f.inverse,   Invert(f).inverse = f.forward

Both directions already return their own log|det|, so nothing else changes.
Invert(AffineAutoregressive()) is a MAF: its density direction (inverse) is the IAF's
one-pass forward, and its sampling direction needs D passes.

Copy with: invert.py (and an empty __init__.py).
"""


class Invert:
    def __init__(self, layer):
        if not all(callable(getattr(layer, name, None)) for name in ("init", "forward", "inverse")):
            raise TypeError(f"Invert needs a layer with init/forward/inverse, got {type(layer).__name__}")
        self.layer = layer

    def init(self, rng, dim):
        return self.layer.init(rng, dim)

    def forward(self, params, x):
        return self.layer.inverse(params, x)

    def inverse(self, params, y):
        return self.layer.forward(params, y)

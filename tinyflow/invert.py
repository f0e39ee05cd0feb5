"""Invert(layer): the same bijection used the other way round.

    Invert(f).forward = f.inverse,   Invert(f).inverse = f.forward

Both directions already return their own log|det|, so nothing else changes. A conditional
layer's context passes straight through (Invert(layer).context_dim is the layer's).
Invert(AffineAutoregressive()) is a MAF: its density direction (inverse) is the IAF's
one-pass forward, and its sampling direction needs D passes.

Copy with: invert.py (and an empty __init__.py).
"""


class Invert:
    def __init__(self, layer):
        if not all(callable(getattr(layer, name, None)) for name in ("init", "forward", "inverse")):
            raise TypeError(f"Invert needs a layer with init/forward/inverse, got {type(layer).__name__}")
        self.layer = layer
        self.context_dim = getattr(layer, "context_dim", None)

    def init(self, rng, dim):
        return self.layer.init(rng, dim)

    def forward(self, params, x, context=None):
        return self.layer.inverse(params, x, *_given(context))

    def inverse(self, params, y, context=None):
        return self.layer.forward(params, y, *_given(context))


def _given(context):
    """No argument for no context: an unconditional layer's forward(params, x) is called as before."""
    return () if context is None else (context,)

"""Hypothesis strategies for testing a layer, yours or tinyflow's, against the contract.

    points(dim, n, bound)               (n, dim) inputs with both signs in every coordinate
    perturbed_params(layer, dim, scale)  layer.init(rng, dim) moved by size * N(0, I), size drawn
    layer_case(layer, dim)               (params, x): everything check_layer needs

and the plain functions behind them, for tests that pick their own seeds:

    both_signs(u, margin)                u with |u_ij| >= margin, row 0 positive, row 1 negative
    perturb_params(layer, dim, seed, size)

    from hypothesis import given
    from tinyflow import check_layer, strategies

    @given(strategies.layer_case(MyLayer(), dim=2))
    def test_my_layer_obeys_the_contract(case):
        check_layer(MyLayer(), *case)

Why both signs: a piecewise layer (leaky ReLU, anything with np.where) has a branch per sign,
and a bug on the branch no test visits survives. Why perturbed parameters: most layers start
at the identity (log_det = 0 at init), where a log-det with the wrong sign is still right.
Coordinates stay at least `margin` away from 0, so a central difference (h = 1e-5) never
straddles a kink at 0.

Hypothesis is a test dependency, not a runtime one: `import tinyflow` never imports this file.
"""
import numpy as onp
from autograd.misc import flatten

try:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ImportError as error:                      # say what to do, not just what is missing
    raise ImportError("tinyflow.strategies needs hypothesis: pip install hypothesis "
                      "(or pip install -e \".[test]\")") from error


def both_signs(u, margin=0.01):
    """Keep |u_ij| >= margin; row 0 all positive and row 1 all negative."""
    u = onp.where(u < 0, onp.minimum(u, -margin), onp.maximum(u, margin))
    u[0], u[1] = onp.abs(u[0]), -onp.abs(u[1])
    return u


def points(dim, n=8, bound=3.0, margin=0.01):
    """(n, dim) float64 points with entries in [-bound, bound], |x_ij| >= margin, and every
    coordinate taking both signs (rows 0 and 1 are forced positive and negative). n >= 2."""
    if n < 2:
        raise ValueError(f"points needs n >= 2 rows to hold both signs, got n = {n}")
    floats = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return arrays(onp.float64, (n, dim), elements=floats).map(lambda u: both_signs(u, margin))


def perturb_params(layer, dim, seed, size):
    """unflatten(theta_0 + size * N(0, I)), theta_0 = flatten(layer.init(rng, dim)), one
    generator seeded with `seed` for both draws. A layer without parameters gets {}."""
    rng = onp.random.default_rng(seed)
    params = layer.init(rng, dim)
    if params == {}:                    # nothing to move (and flatten would warn about an empty tree)
        return params
    theta, unflatten = flatten(params)
    return unflatten(theta + size * rng.standard_normal(theta.shape))


@st.composite
def perturbed_params(draw, layer, dim, scale=1.5):
    """perturb_params with a drawn seed and a drawn size in [scale / 5, scale]: never the
    initial parameters."""
    return perturb_params(layer, dim, draw(st.integers(0, 2 ** 32 - 1)), draw(st.floats(scale / 5, scale)))


def layer_case(layer, dim, n=8, bound=3.0, scale=1.5):
    """(params, x) for check_layer(layer, params, x): perturbed params and two-signed points."""
    return st.tuples(perturbed_params(layer, dim, scale), points(dim, n, bound))

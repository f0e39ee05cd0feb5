"""The hand-written primitives (linear.py, mlp.py, made.py, affine.py, columns.py, coupling_backprop.py, leaves.py) against the plain
autograd.numpy expressions they replace: the same values, the same gradients as autograd derives
for the plain expression, and gradients that match central finite differences.

Each case draws its arguments from a seed, so Hypothesis explores shapes and values. Gradients are
compared through a random cotangent c: d/d(arg) sum(c * f(args)), the vector-Jacobian product.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinyflow.affine import affine, affine_inverse, soft_clamp
from tinyflow.columns import merge_columns, take_columns
import tinyflow as tf
from tinyflow.coupling_backprop import coupling_step
from tinyflow.linear import add_all, dense, dense_inverse, lu_linear, lu_log_det, lu_weight
from tinyflow.made import made, made_masks
from tinyflow.mlp import dense_relu, dense_tanh, mlp_step

AUTOGRAD_TOL = 1e-12       # the same math in another order: rounding only
FINITE_DIFF_TOL = 1e-6     # central differences, h = 1e-6 times max(1, |arg|): O(h^2) + O(eps / h)


def _lu_reference(LU):
    L = anp.tril(LU, -1) + anp.eye(len(LU))
    U = anp.triu(LU, 1) + anp.diag(anp.exp(anp.diag(LU)))
    return anp.dot(L, U)


def _merge_reference(a, b, index_a, index_b):
    return anp.concatenate([a, b], axis=1)[:, np.argsort(np.concatenate([index_a, index_b]))]


def _lu_linear_reference(v, LU, b, order, inverse):
    W = _lu_reference(LU)[order]
    return anp.linalg.solve(W, (v - b).T).T if inverse else anp.dot(v, W.T) + b


def _coupling_case(rng, n, dim, width, activation, inverse, context_dim):
    """coupling_step against AffineCoupling's readable chain (fused=False), both as (N, D + 1) = [out, log_det],
    on weights pushed away from init (the last layer starts at zero) and a context when context_dim > 0."""
    mask = np.arange(dim) % 2
    layer = tf.AffineCoupling(mask, hidden=(width, width), activation=activation, context_dim=context_dim, fused=False)
    shapes = [a.shape for l in layer.init(rng, dim) for a in (l["W"], l["b"])]
    weights = np.concatenate([rng.standard_normal(shape).ravel() / np.sqrt(shape[0]) for shape in shapes])
    plan = tf.AffineCoupling(mask, hidden=(width, width), activation=activation, context_dim=context_dim).plans[inverse]
    context = rng.standard_normal((n, context_dim)) if context_dim else None

    def primitive(v, c, weights):
        return coupling_step(v, c, weights, plan)

    def reference(v, c, weights):
        ends = np.cumsum([np.prod(shape) for shape in shapes])
        arrays = [anp.reshape(weights[end - np.prod(shape):end], shape) for end, shape in zip(ends, shapes)]
        params = [{"W": W, "b": b} for W, b in zip(arrays[::2], arrays[1::2])]
        out, log_det = (layer.inverse if inverse else layer.forward)(params, v, *(() if c is None else (c,)))
        return anp.concatenate([out, log_det[:, None]], axis=1)
    argnums = (0, 1, 2) if context_dim else (0, 2)
    return primitive, reference, (2 * rng.standard_normal((n, dim)), context, weights), argnums


def _draw(rng, n, d_in, d_out):
    """Arguments of every case for batch n and widths d_in, d_out (a well-conditioned square W
    for dense_inverse; columns 1 and 3 of a 4-column x for the column cases)."""
    x = rng.standard_normal((n, d_in))
    W = rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)
    b = rng.standard_normal(d_out)
    square = np.eye(d_in) + 0.3 * rng.standard_normal((d_in, d_in)) / np.sqrt(d_in)
    s, t = rng.standard_normal((2, n, d_in))
    return {
        "dense": (dense, lambda x, W, b: anp.dot(x, W) + b, (x, W, b), (0, 1, 2)),
        "dense_tanh": (dense_tanh, lambda x, W, b: anp.tanh(anp.dot(x, W) + b), (x, W, b), (0, 1, 2)),
        "dense_relu": (dense_relu, lambda x, W, b: anp.maximum(anp.dot(x, W) + b, 0.0), (x, W, b), (0, 1, 2)),
        "dense_inverse": (dense_inverse, lambda y, W, b: anp.linalg.solve(W.T, (y - b).T).T,
                          (x, square, rng.standard_normal(d_in)), (0, 1, 2)),
        "lu_weight": (lu_weight, _lu_reference, (rng.standard_normal((d_in, d_in)),), (0,)),
        "add_all": (add_all, lambda a, b, c: a + b + c, (x, s, t), (0, 1, 2)),
        "soft_clamp": (soft_clamp, lambda s, s_max: s_max * anp.tanh(s / s_max), (3 * s, 2.0), (0,)),
        "affine": (affine, lambda x, s, t: x * anp.exp(s) + t, (x, s, t), (0, 1, 2)),
        "affine_inverse": (affine_inverse, lambda y, s, t: (y - t) * anp.exp(-s), (x, s, t), (0, 1, 2)),
        "take_columns": (take_columns, lambda x, i: x[:, i], (rng.standard_normal((n, 4)), np.array([3, 1])), (0,)),
        "lu_linear": (lu_linear, _lu_linear_reference, (x, 0.5 * rng.standard_normal((d_in, d_in)), rng.standard_normal(d_in),
                                                        rng.permutation(d_in), False), (0, 1, 2)),
        "lu_linear_inverse": (lu_linear, _lu_linear_reference, (x, 0.5 * rng.standard_normal((d_in, d_in)),
                                                                rng.standard_normal(d_in), rng.permutation(d_in), True),
                              (0, 1, 2)),
        "lu_log_det": (lu_log_det, lambda LU, n, sign: sign * anp.trace(LU) * anp.ones(n),
                       (rng.standard_normal((d_in, d_in)), n, -1.0), (0,)),
        "coupling_step_tanh": _coupling_case(rng, n, d_in + 1, d_out, "tanh", False, 0),
        "coupling_step_inverse": _coupling_case(rng, n, d_in + 1, d_out, "tanh", True, 2),
        "coupling_step_relu": _coupling_case(rng, n, d_in + 1, d_out, "relu", True, 1),
        "merge_columns": (merge_columns, _merge_reference,
                          (x[:, :2], s[:, :1], np.array([0, 2]), np.array([1])) if d_in >= 2 else
                          (x, s, np.array([1]), np.array([0])), (0, 1)),
    }


NAMES = list(_draw(np.random.default_rng(0), 3, 2, 2))
every_primitive = pytest.mark.parametrize("name", NAMES)
shapes = st.tuples(st.integers(0, 2 ** 32 - 1), st.integers(1, 6), st.integers(1, 4), st.integers(1, 5))


def _case(name, seed, n, d_in, d_out):
    rng = np.random.default_rng(seed)
    primitive, reference, args, argnums = _draw(rng, n, d_in, d_out)[name]
    cotangent = rng.standard_normal(np.shape(reference(*args)))
    return primitive, reference, args, argnums, cotangent


def _vjp(f, args, argnum, cotangent):
    def weighted(arg):
        return anp.sum(cotangent * f(*args[:argnum], arg, *args[argnum + 1:]))
    return grad(weighted)(args[argnum])


def _relative(a, b):
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


@every_primitive
@given(shapes)
@settings(max_examples=15)
def test_primitive_computes_the_plain_expression(name, draw):
    primitive, reference, args, _, _ = _case(name, *draw)
    assert _relative(primitive(*args), reference(*args)) <= AUTOGRAD_TOL


@every_primitive
@given(shapes)
@settings(max_examples=15)
def test_primitive_gradient_matches_autograd_of_the_plain_expression(name, draw):
    primitive, reference, args, argnums, cotangent = _case(name, *draw)
    for argnum in argnums:
        got, want = _vjp(primitive, args, argnum, cotangent), _vjp(reference, args, argnum, cotangent)
        assert np.shape(got) == np.shape(args[argnum])
        assert _relative(got, want) <= AUTOGRAD_TOL, f"argument {argnum}"


@pytest.mark.parametrize("name", [n for n in NAMES if n != "coupling_step_relu"])   # relu: kinks, see dense_relu
@given(shapes)
@settings(max_examples=8)
def test_primitive_gradient_matches_finite_differences(name, draw):
    primitive, _, args, argnums, cotangent = _case(name, *draw)
    if name == "dense_relu":           # a kink between x - h and x + h would make the difference meaningless
        assume(np.min(np.abs(np.dot(args[0], args[1]) + args[2])) > 1e-4)
    for argnum in argnums:
        arg = np.asarray(args[argnum], dtype=float)
        numeric = np.zeros(arg.shape)
        for i in np.ndindex(arg.shape):
            h = 1e-6 * max(1.0, abs(arg[i]))
            bumped = [arg.copy(), arg.copy()]
            bumped[0][i] += h
            bumped[1][i] -= h
            values = [np.sum(cotangent * primitive(*args[:argnum], a, *args[argnum + 1:])) for a in bumped]
            numeric[i] = (values[0] - values[1]) / (2 * h)
        assert _relative(_vjp(primitive, args, argnum, cotangent), numeric) <= FINITE_DIFF_TOL, f"argument {argnum}"


def test_take_then_merge_gives_back_the_columns():
    x = np.random.default_rng(1).standard_normal((5, 4))
    a, b = np.array([2, 0]), np.array([3, 1])
    assert np.array_equal(merge_columns(take_columns(x, a), take_columns(x, b), a, b), x)


def test_read_leaves_gives_the_gradient_of_plain_lookups():
    """leaves.read_leaves swaps autograd's container lookups for slices of one flat vector: the
    gradient with respect to the nested params must be the plain lookups' gradient, to rounding."""
    from autograd.misc import flatten

    from tinyflow.leaves import read_leaves
    rng = np.random.default_rng(0)
    params = {"base": {}, "layers": [{"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)},
                                     {}, [rng.standard_normal(4), rng.standard_normal((2, 2))]]}

    def loss(p):
        return (anp.sum(anp.sin(p["layers"][0]["W"]) @ p["layers"][0]["b"]) + anp.sum(p["layers"][2][0] ** 3)
                * anp.prod(p["layers"][2][1]))
    plain, read = grad(loss)(params), grad(lambda p: loss(read_leaves(p)))(params)
    assert loss(read_leaves(params)) is not None and read_leaves(params) is params   # no box: unchanged
    for a, b in zip(flatten(plain)[0], flatten(read)[0]):
        assert abs(a - b) <= 1e-12 * max(1.0, abs(a))
    assert flatten(plain)[0].size == flatten(read)[0].size and isinstance(read["layers"][2], list)


def test_flatten_params_is_autograds_flatten_without_the_tracing():
    from autograd.misc import flatten

    import tinyflow as tf
    rng = np.random.default_rng(1)
    params = {"base": {}, "layers": [{"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}, {},
                                     [rng.standard_normal(4), (rng.standard_normal((2, 2)), np.array(0.5))]]}
    theta, unflatten = tf.flatten_params(params)
    theirs, their_unflatten = flatten(params)
    assert np.array_equal(theta, theirs)
    moved = theta + rng.standard_normal(theta.shape)
    for ours, reference in zip(flatten(unflatten(moved))[0], flatten(their_unflatten(moved))[0]):
        assert ours == reference
    assert isinstance(unflatten(moved)["layers"][2][1], tuple)


def _pushed(params, rng):
    return tf.leaves._unflatten(tf.leaves.leaf_index(params))(
        tf.flatten_params(params)[0] + 0.1 * rng.standard_normal(tf.flatten_params(params)[0].shape))


def test_fits_flat_path_gives_the_gradient_of_the_nested_params_for_every_kind_of_layer():
    """Lazy leaves (one read per fused layer, one per array looked up otherwise) against autograd's
    gradient of the readable flow (fused=False) on the nested params."""
    rng = np.random.default_rng(0)

    def layers(fused):
        return [tf.AffineCoupling([1, 0, 1], hidden=(8, 8), fused=fused), tf.LULinear(),
                tf.SplineCoupling([0, 1, 0], hidden=(8,)), tf.Invert(tf.AffineAutoregressive((8,))),
                tf.AffineCoupling([0, 1, 1], hidden=(8,), activation="relu", fused=fused), tf.Planar()]
    fast, slow = (tf.Flow(tf.StandardNormal(3), layers(fused)) for fused in (True, False))
    params = _pushed(fast.init(rng), rng)
    x = rng.standard_normal((16, 3))
    theta, _, loss_and_grad = tf.flat_loss_and_grad(tf.forward_kl(fast), params)
    value, flat_gradient = loss_and_grad(theta, x)
    nested = grad(tf.forward_kl(slow))(params, x)
    assert value == pytest.approx(float(tf.forward_kl(slow)(params, x)), rel=1e-13)
    assert _relative(flat_gradient, tf.flatten_params(nested)[0]) <= AUTOGRAD_TOL


def test_chapter_5s_fused_step_records_137_nodes():
    """16 couplings x (one read of all its params, the step, two column picks) + 16 LULinear x (two
    reads, the map, the log-det) + 9 for the input, the base and the loss: 137 (425 unfused)."""
    from autograd.core import VJPNode
    from autograd.tracer import trace
    from autograd.util import toposort
    layers = []
    for mask in tf.alternating_masks(2, 16):
        layers += [tf.AffineCoupling(mask, hidden=(64, 64), activation="relu"), tf.LULinear()]
    flow = tf.Flow(tf.StandardNormal(2), layers)
    params = flow.init(np.random.default_rng(0))
    index = tf.leaves.leaf_index(params)
    x = np.random.default_rng(1).standard_normal((64, 2))
    _, end = trace(VJPNode.new_root(), lambda theta: tf.forward_kl(flow)(tf.leaves.leaves(theta, index), x),
                   tf.flatten_params(params)[0])
    nodes = toposort(end)
    assert sum(node.vjp is not None for node in nodes) == 137


@pytest.mark.parametrize("activation, masked", [("tanh", False), ("relu", False), ("tanh", True)])
def test_mlp_step_is_the_chain_of_layers_bit_for_bit(activation, masked):
    """mlp_step (the whole MLP as one node, as SplineCoupling and made_fused run it in training)
    against mlp / made, the chain it replaces: the same numbers to the last bit, values and the
    gradients on the flat params and on the input, because each layer makes the same numpy calls."""
    rng = np.random.default_rng(0)
    dim, hidden = 3, (8, 8)
    masks = made_masks(dim, hidden, channels=2) if masked else None
    params = _pushed(tf.mlp_init(rng, [dim, *hidden, 2 * dim]), rng)
    theta, index = tf.flatten_params(params)[0], tf.leaves.leaf_index(params)
    x, c = rng.standard_normal((16, dim)), rng.standard_normal((16, 2 * dim))

    def chain(theta, x):
        p = tf.leaves.leaves(theta, index)
        return made(p, masks, x) if masked else tf.mlp(p, x, activation)

    def fused(theta, x):
        p = tf.leaves.leaves(theta, index)
        weights = tf.leaves.flat_params(p)
        return mlp_step(x, weights, [W.shape for W in (layer["W"] for layer in params)], activation, masks)
    assert np.array_equal(chain(theta, x), fused(theta, x))
    for argnum in (0, 1):
        g_chain = grad(lambda theta, x: anp.sum(c * chain(theta, x)), argnum)(theta, x)
        g_fused = grad(lambda theta, x: anp.sum(c * fused(theta, x)), argnum)(theta, x)
        assert np.array_equal(g_chain, g_fused)

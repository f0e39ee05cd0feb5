"""Invertible residual layer (Behrmann et al. 2019, "Invertible residual networks" (i-ResNet);
Chen et al. 2019, "Residual flows for invertible generative modeling").

    y = f(x) = x + g(x),   g(x) = phi(... phi(x W_1 + b_1) ...) W_L + b_L,   Lip(g) <= c < 1
    log|det dy/dx| = log det(I + J_g(x))              (> 0: J_g's eigenvalues have |lambda| <= c < 1)

Lipschitz bound: every W_l is normalised to spectral norm at most c^(1/L) (lipschitz.normalise)
and phi is 1-Lipschitz (LipSwish, tanh or ELU), so Lip(g) <= product of the norms <= c. The
papers normalise each weight to c, which bounds their g by c^L; here `lipschitz` is the bound on
g itself, the c in both statements below.

Inverse (Banach): for each y, x -> y - g(x) is a contraction with constant c, so it has exactly
one fixed point, x = f^-1(y), and x_0 = y, x_(k+1) = y - g(x_k) reaches it, per point, with

    |x_k - x| <= c^k / (1 - c) |x_1 - x_0|          a priori: the most steps it can need
    |x_k - x| <= c / (1 - c) |x_k - x_(k-1)|        a posteriori: the stopping test

solve stops when the second bound is below TOL max(1, |y|) for every point (or when the first
one is: rounding can stall the steps just above it). Gradients through the inverse come from the
implicit function theorem, not from the unrolled loop: x = y - g(x) gives (I + J_g) dx =
dy - (dg/dtheta) dtheta, so the cotangent a = x_bar (I + J_g)^-1 solves a = x_bar - a J_g, another
contraction with constant c, iterated the same way.

log det(I + J_g) exactly: J_g v for a direction v by the chain rule forward through the layers,
    J_g v = ((v W_1) * phi'(a_1)) W_2 ... W_L          (row-wise; a_l the pre-activations),
D such products give the (N, D, D) Jacobian, and slogdet its log-determinant, point by point. The
product is written with autograd.numpy, so training differentiates it (phi'' enters there: see
lipschitz.py on LipSwish). O(D) products: meant for small D (the chapter's D = 2); the estimators
in residual_estimators.py replace the D directions by random probes and the determinant by a
series.

Residual Flows as the papers train them, density by the explicit map and sampling by the fixed
point, is Invert(InvertibleResidual(...)), as a MAF is Invert(AffineAutoregressive(...)).

Parameters: [{"W": (n_in, n_out), "b": (n_out,), "beta_raw": ()}, ..., {"W", "b"}], sizes
[D, *hidden, D]; beta_raw (LipSwish's beta = softplus(beta_raw), from 0.5 as in the papers' code)
only on hidden layers, only for LipSwish. Init: W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), the last
layer zero, so the layer starts as the identity. x, y (N, D); log_det (N,).

Copy with: residual.py, lipschitz.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd import make_vjp
from autograd.extend import defvjp_argnums, primitive

from .lipschitz import ACTIVATIONS, normalise, softplus
from .validate import check_dim, check_hidden, check_points

TOL = 1e-12             # the fixed point's error bound, relative to max(1, |y|)
MAX_STEPS = 100_000     # the a priori bound is the real limit: ~1,000 steps at c = 0.97


def network(weights, betas, x, activation):
    """g(x) (N, D) and the slopes phi'(a_l) (N, n_l) of its hidden layers."""
    phi, h, slopes = ACTIVATIONS[activation], x, []
    for (W, b), beta in zip(weights[:-1], betas):
        h, slope = phi(np.dot(h, W) + b, beta)
        slopes.append(slope)
    W, b = weights[-1]
    return np.dot(h, W) + b, slopes


def jvp(weights, slopes, v):
    """J_g(x) v for each point, v (N, D) or (1, D) -> (N, D): the chain rule forward."""
    for (W, _), slope in zip(weights[:-1], slopes):
        v = np.dot(v, W) * slope
    return np.dot(v, weights[-1][0])


def vjp(weights, slopes, a):
    """a J_g(x) for each point, a (N, D) -> (N, D): the chain rule backward (plain numbers)."""
    a = onp.dot(a, weights[-1][0].T)
    for (W, _), slope in zip(reversed(weights[:-1]), reversed(slopes)):
        a = onp.dot(a * slope, W.T)
    return a


def log_det_exact(weights, slopes, dim):
    """log det(I + J_g(x)) (N,): the Jacobian's D columns J_g e_j, then slogdet."""
    columns = [jvp(weights, slopes, onp.eye(dim)[j:j + 1]) for j in range(dim)]
    return np.linalg.slogdet(np.eye(dim) + np.stack(columns, axis=2))[1]


def iterate(step, start, c, scale):
    """The fixed point of the contraction step (constant c), from start: (point, steps taken).
    Stops when c / (1 - c) |x_k - x_(k-1)| <= scale for every row, or at the a priori count."""
    x, limit = start, MAX_STEPS
    for k in range(1, MAX_STEPS + 1):
        x_next = step(x)
        moved = onp.sqrt(onp.sum((x_next - x) ** 2, axis=1))
        x = x_next
        if k == 1 and moved.max() > 0:     # c^k / (1 - c) |x_1 - x_0| <= scale from here on
            limit = int(onp.ceil(onp.max(onp.log(scale * (1 - c) / onp.maximum(moved, 1e-300)) / onp.log(c))))
        if onp.all(c / (1 - c) * moved <= scale) or k >= limit:
            return x, k
    return x, MAX_STEPS


def _unpack(num_layers, leaves):
    """[(W, b)] and the betas ([None] * (L - 1) without a slope parameter) from the flat leaves."""
    weights = [(leaves[2 * l], leaves[2 * l + 1]) for l in range(num_layers)]
    betas = list(leaves[2 * num_layers:]) or [None] * (num_layers - 1)
    return weights, betas


@primitive
def fixed_point(y, c, activation, num_layers, *leaves):
    """x with x + g(x) = y, g given by the normalised leaves [W_1, b_1, ..., W_L, b_L, betas]."""
    weights, betas = _unpack(num_layers, leaves)
    scale = TOL * onp.maximum(1.0, onp.sqrt(onp.sum(y ** 2, axis=1)))
    return iterate(lambda x: y - network(weights, betas, x, activation)[0], y, c, scale)[0]


def fixed_point_vjp(argnums, x, args, kwargs):
    """Implicit function theorem: a = x_bar (I + J_g)^-1 by the contraction a <- x_bar - a J_g;
    then y_bar = a and theta_bar = -a dg/dtheta."""
    y, c, activation, num_layers, *leaves = args
    weights, betas = _unpack(num_layers, leaves)
    slopes = network(weights, betas, x, activation)[1]

    def backward(x_bar):
        scale = TOL * onp.maximum(1.0, onp.sqrt(onp.sum(x_bar ** 2, axis=1)))
        a = iterate(lambda a: x_bar - vjp(weights, slopes, a), x_bar, c, scale)[0]
        grads = {0: a}
        if any(i >= 4 for i in argnums):
            g_of_leaves = lambda ls: network(*_unpack(num_layers, ls), x, activation)[0]
            leaf_grads = make_vjp(g_of_leaves)(list(leaves))[0](-a)
            grads.update({4 + i: grad for i, grad in enumerate(leaf_grads)})
        return [grads[i] for i in argnums]
    return backward


defvjp_argnums(fixed_point, fixed_point_vjp)


class InvertibleResidual:
    """y = x + g(x) with Lip(g) <= lipschitz < 1; hidden: g's hidden widths; activation:
    "lipswish" (default, Residual Flows), "tanh" or "elu" (i-ResNet)."""

    def __init__(self, hidden=(64, 64), lipschitz=0.97, activation="lipswish"):
        self.hidden = check_hidden(hidden)
        if isinstance(lipschitz, bool) or not isinstance(lipschitz, (int, float, onp.integer, onp.floating)):
            raise TypeError(f"lipschitz must be a number in (0, 1), got {type(lipschitz).__name__}")
        if not 0 < lipschitz < 1:
            raise ValueError(f"lipschitz must be in (0, 1): the fixed-point inverse and the log-det series "
                             f"need Lip(g) < 1; got {lipschitz}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.lipschitz, self.activation = float(lipschitz), activation

    def init(self, rng, dim):
        sizes = [check_dim(dim), *self.hidden, dim]
        params = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / onp.sqrt(n_in)
            params.append({"W": rng.uniform(-bound, bound, (n_in, n_out)), "b": rng.uniform(-bound, bound, n_out)})
            if self.activation == "lipswish" and len(params) < len(sizes) - 1:
                params[-1]["beta_raw"] = onp.array(0.5)
        params[-1] = {"W": onp.zeros((sizes[-2], dim)), "b": onp.zeros(dim)}      # g = 0: the identity
        return params

    def weights(self, params):
        """[(W_hat, b)] with every ||W_hat|| <= c^(1/L), and the activations' betas."""
        c_layer = self.lipschitz ** (1 / len(params))
        weights = [(normalise(layer["W"], c_layer), layer["b"]) for layer in params]
        if self.activation != "lipswish":
            return weights, [None] * (len(params) - 1)
        return weights, [softplus(layer["beta_raw"]) for layer in params[:-1]]

    def g(self, params, x):
        """g(x) (N, D): the residual branch."""
        weights, betas = self.weights(params)
        return network(weights, betas, check_points(x, _dim(params)), self.activation)[0]

    def forward(self, params, x):
        x = check_points(x, _dim(params))
        weights, betas = self.weights(params)
        g, slopes = network(weights, betas, x, self.activation)
        return x + g, log_det_exact(weights, slopes, x.shape[1])

    def inverse(self, params, y):
        y = check_points(y, _dim(params), "y")
        x = self.preimage(params, y)
        weights, betas = self.weights(params)
        slopes = network(weights, betas, x, self.activation)[1]
        return x, -log_det_exact(weights, slopes, y.shape[1])

    def preimage(self, params, y):
        """x = f^-1(y) (N, D) without its log-det: the fixed point, differentiable in y and params."""
        weights, betas = self.weights(params)
        leaves = [w for pair in weights for w in pair] + [beta for beta in betas if beta is not None]
        return fixed_point(check_points(y, _dim(params), "y"), self.lipschitz, self.activation, len(weights), *leaves)

    def solve(self, params, y):
        """The fixed-point inverse on plain numbers: (x, steps taken), for counting iterations."""
        y = onp.asarray(check_points(y, _dim(params), "y"))
        weights, betas = self.weights(params)
        scale = TOL * onp.maximum(1.0, onp.sqrt(onp.sum(y ** 2, axis=1)))
        return iterate(lambda x: y - network(weights, betas, x, self.activation)[0], y, self.lipschitz, scale)


def _dim(params):
    """D, read off the first weight (n_in = D)."""
    return params[0]["W"].shape[0]

"""Invertible residual layer (Behrmann et al. 2019, "Invertible residual networks" (i-ResNet);
Chen et al. 2019, "Residual flows for invertible generative modeling").

    y = f(x) = x + g(x),   g(x) = phi(... phi(x W_1 + b_1) ...) W_L + b_L,   Lip(g) <= c < 1
    log|det dy/dx| = log det(I + J_g(x))        (det > 0: J_g's eigenvalues have |lambda| <= c < 1)

Lipschitz bound: every W_l is normalised to spectral norm at most c^(1/L) (lipschitz.normalise)
and phi is 1-Lipschitz (LipSwish, tanh or ELU), so Lip(g) <= product of the norms <= c. The
papers normalise each weight to c, which bounds their g by c^L; here `lipschitz` is the bound on
g itself, the c in both statements below.

Inverse (Banach; fixed_point.py): for each y, x -> y - g(x) is a contraction with constant c,
so x_0 = y, x_(k+1) = y - g(x_k) converges to the one x with x + g(x) = y, with error at most
c^k / (1 - c) |x_1 - x_0| after k steps; it stops at 1e-12 relative. Its gradients come from the
implicit function theorem, not from differentiating the loop.

log det(I + J_g) exactly: J_g v for a direction v by the chain rule forward through the layers,
    J_g v = (((v W_1) * phi'(a_1)) W_2 * phi'(a_2) ...) W_L      (row-wise; a_l the pre-activations),
D such products give the (N, D, D) Jacobian, and slogdet its log-determinant, point by point.
forward_plain writes this with autograd.numpy, to be read, so autograd differentiates it (phi''
enters there: see lipschitz.py on LipSwish). forward and inverse compute the same numbers with
residual_backprop.residual, one autograd node with its backprop written out, held to
forward_plain by the tests: about 75 nodes a layer become 1, and an 8-layer maximum-likelihood
step fell from 55 to 33 ms of CPU (D = 2, hidden (64, 64), batch 512). O(D) products: meant for
small D (the chapter's D = 2); the estimators in residual_estimators.py replace the D directions
by random probes and the determinant by a series.

Residual Flows as the papers train them, density by the explicit map and sampling by the fixed
point, is Invert(InvertibleResidual(...)), as a MAF is Invert(AffineAutoregressive(...)).

Parameters: [{"W": (n_in, n_out), "b": (n_out,), "beta_raw": ()}, ..., {"W", "b"}], sizes
[D, *hidden, D]; beta_raw (LipSwish's beta = softplus(beta_raw), from 0.5 as in the Residual
Flows code) only on hidden layers, only for LipSwish. Init: W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)),
the last layer zero, so the layer starts as the identity. x, y (N, D); log_det (N,).

Copy with: residual.py, fixed_point.py, leaves.py, lipschitz.py, residual_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd.tracer import isbox

from .fixed_point import banach_iterate, fixed_point
from .leaves import LazyList, read_leaves, shapes as array_shapes
from .lipschitz import ACTIVATIONS, normalise, softplus
from .residual_backprop import residual
from .validate import check_dim, check_hidden, check_points


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


def vjp(weights, slopes, u):
    """J_g(x)^T u for each point, u (N, D) -> (N, D): the same chain backward, transposed."""
    u = np.dot(u, weights[-1][0].T)
    for (W, _), slope in reversed(list(zip(weights[:-1], slopes))):
        u = np.dot(u * slope, W.T)
    return u


def log_det_exact(weights, slopes, dim):
    """log det(I + J_g(x)) (N,): the Jacobian's D columns J_g e_j, then slogdet (its sign is +1)."""
    columns = [jvp(weights, slopes, onp.eye(dim)[j:j + 1]) for j in range(dim)]
    return np.linalg.slogdet(np.eye(dim) + np.stack(columns, axis=2))[1]


def preimage(weights, betas, y, c, activation):
    """x = f^-1(y) (N, D) by fixed_point, differentiable. The weights go in as separate arguments:
    autograd traces a primitive's top-level arguments only, so a list passed whole would get no
    gradient."""
    num_layers = len(weights)

    def g(x, leaves):
        pairs = [(leaves[2 * l], leaves[2 * l + 1]) for l in range(num_layers)]
        return network(pairs, list(leaves[2 * num_layers:]) or betas, x, activation)[0]
    leaves = [w for pair in weights for w in pair] + [beta for beta in betas if beta is not None]
    return fixed_point(g, y, c, *leaves)


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
        """(y, log det(I + J_g(x))) as one autograd node (residual_backprop.py)."""
        shapes, leaves = block_leaves(params)
        x = check_points(x, shapes[0][0] if shapes else onp.shape(leaves[0])[0])       # D: W_1 is (D, n_1)
        return residual(x, self.lipschitz, self.activation, {}, shapes, *leaves)

    def forward_plain(self, params, x):
        """What forward computes, written with autograd.numpy to be read: the reference the
        tests hold residual_backprop.residual to."""
        x = check_points(x, _dim(params))
        weights, betas = self.weights(params)
        g, slopes = network(weights, betas, x, self.activation)
        return x + g, log_det_exact(weights, slopes, x.shape[1])

    def inverse(self, params, y):
        y = check_points(y, _dim(params), "y")
        weights, betas = self.weights(params)
        x = preimage(weights, betas, y, self.lipschitz, self.activation)
        return x, -residual(x, self.lipschitz, self.activation, {}, None, *raw_leaves(params))[1]

    def preimage(self, params, y):
        """x = f^-1(y) (N, D) without its log-det: the fixed point, differentiable in y and params."""
        weights, betas = self.weights(params)
        return preimage(weights, betas, check_points(y, _dim(params), "y"), self.lipschitz, self.activation)

    def jacobian(self, params, x):
        """J_g(x) (N, D, D), [n, i, j] = d g_i / d x_j at x[n]: column j is J_g e_j (jvp)."""
        x = check_points(x, _dim(params))
        weights, betas = self.weights(params)
        slopes = network(weights, betas, x, self.activation)[1]
        return np.stack([jvp(weights, slopes, onp.eye(x.shape[1])[j:j + 1]) for j in range(x.shape[1])], axis=2)

    def solve(self, params, y):
        """The fixed-point inverse on plain numbers: (x, steps taken), for counting iterations."""
        y = onp.asarray(check_points(y, _dim(params), "y"))
        weights, betas = self.weights(params)
        return banach_iterate(lambda x: y - network(weights, betas, x, self.activation)[0], y, self.lipschitz)


def raw_leaves(params):
    """The raw parameters in residual_backprop's order: W_1, b_1[, beta_raw_1], ..., W_L, b_L."""
    return [layer[key] for layer in params for key in ("W", "b", "beta_raw") if key in layer]


def block_leaves(params):
    """(shapes, leaves) for residual_backprop: the raw parameters as one vector and their shapes
    where fit's flat parameters (leaves.py) hold them in residual_backprop's order (one node on
    the tape, not eight), else (None, raw_leaves(params))."""
    if isbox(params):                                      # a nested params autograd is differentiating
        params = read_leaves(params)
    if isinstance(params, LazyList) and all(list(layer) == [key for key in ("W", "b", "beta_raw") if key in layer]
                                            for layer in params):
        return array_shapes(params), [params.flat()]
    return None, raw_leaves(params)


def _dim(params):
    """D, read off the first weight (n_in = D)."""
    return params[0]["W"].shape[0]

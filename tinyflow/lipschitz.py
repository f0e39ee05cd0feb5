"""Lipschitz-bounded pieces for invertible residual layers: the spectral norm of a weight matrix
by power iteration, and the LipSwish activation.

Spectral norm. The Lipschitz constant of a -> a W + b is sigma(W), the largest singular value of
W (the largest stretch |a W| over unit rows a). Power iteration (von Mises 1929) finds it from a
start vector v_0 (n_out,):

    u = W v / |W v|,   v = W^T u / |W^T u|,   sigma = u^T W v          (one step)

Each step multiplies v by W^T W, so after k steps v is (W^T W)^k v_0, normalised: its angle to
the top right singular vector shrinks like (sigma_2 / sigma_1)^(2k), and sigma's relative error,
from below, like the square of that (Golub & Van Loan, "Matrix computations", section 8.2).
Measured on 200 64 x 64 weights (mlp_init's plus up to 1.5 N(0, 1)): 49 to 1,514 steps (median
163) for sigma within 1e-12, since sigma_2 / sigma_1 is often above 0.9.

Keeping v between training steps. Spectral normalisation as Miyato et al. (2018) wrote it, and
i-ResNet and Residual Flows after them, stores v beside the weights and takes one step per
training step: the weights move little, so last step's v is almost right. That makes the network
a function of its training history, not of its weights alone: the same W gives a slightly
different map depending on how v got there, one step leaves sigma underestimated (so Lip(g) <= c
holds only roughly), and v has to be saved, restored and kept out of the optimiser. Here it is
not kept: `singular_vectors` converges from a fixed start on every call, so the layer is a
function of params alone (check_layer, finite differences, save_params/load_params and the
fixed-point inverse all rely on that), and params holds only trainable floats. It stays cheap by
taking the steps in doublings: with B_0 = W^T W / trace and B_(j+1) = B_j^2 / trace(B_j^2), B_j is
(W^T W)^(2^j) up to scale, so j matrix products take 2^j steps at once; its column with the
largest diagonal entry is (W^T W)^(2^j) e_i, power iteration from v_0 = e_i. It stops when
tr(B_j^2), the sum of the squared shares p_i of B_j's eigenvalues (trace 1), stops rising: it
reaches 1 as the top share takes everything, or 1/k if k singular values tie at the top. On 200
such weights 10 to 15 products (0.15 ms) settled it, sigma within 1.3e-15 (relative) of numpy's SVD.
`power_iteration` is the one-step version, with its state v passed in and returned, to show
the convergence.

Gradient. sigma = u^T W v with u, v held fixed (plain numbers, not traced) gives autograd
d sigma / dW = u v^T, the derivative of the largest singular value wherever it is simple (where
sigma_1 = sigma_2 it has none, and u v^T is a subgradient).

Normalisation (both papers): W_hat = W / max(1, sigma / c) leaves W alone if sigma(W) <= c and
otherwise scales it onto sigma(W_hat) = c.

LipSwish (Chen et al. 2019, "Residual Flows for invertible generative modeling"):

    phi(a) = a sigmoid(beta a) / 1.1,   beta = softplus(beta_raw) > 0
    phi'(a) = s (1 + t (1 - s)) / 1.1,   t = beta a,  s = sigmoid(t)

Swish's slope s (1 + t (1 - s)) depends on t alone and lies in [-0.0998, 1.0998] (its minimum at
t = -2.3994, its maximum at t = 2.3994), so dividing by 1.1 bounds |phi'| by 1 for every beta. Why not ELU or tanh: the
log-density depends on phi' (through J_g), so its gradient depends on phi''. A Lipschitz-bounded
g is expressive where its units have slopes near 1, and ELU reaches slope 1 on the whole half-line
a > 0 (and softplus as a -> inf), where phi'' = 0: the paper's derivative saturation, a unit at
full slope gets no gradient from the log-det through phi''. tanh saturates the classic way, phi'
and phi'' both -> 0 in its tails, and has slope >= 0.99 only for |a| < 0.1. LipSwish's slope is
not monotone: it peaks at one point and falls back to 1/1.1 beyond it (slope >= 0.99 only for
beta a in [1.97, 2.97]), so there is no flat region at full slope, and beta (learned) sets how
sharply it bends.

Shapes: W (n_in, n_out), used as a -> a W; u (n_in,), v (n_out,).

Copy with: lipschitz.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd.tracer import getval

MAX_DOUBLINGS = 64          # 2^64 power steps: far past any gap a float64 matrix can have
SETTLED = 1e-14             # tr(B^2) is at most 1; rounding in a 64 x 64 product is ~1e-15


def power_iteration(W, v, num_steps):
    """num_steps steps of power iteration on W (plain numpy) from v (n_out,): (sigma, u, v).
    The returned v is the state to start the next call from."""
    for _ in range(num_steps):
        u = W @ v
        u /= onp.linalg.norm(u)
        v = W.T @ u
        v /= onp.linalg.norm(v)
    u = W @ v
    sigma = onp.linalg.norm(u)
    return sigma, u / sigma, v


def singular_vectors(W):
    """The top singular pair (u, v) of W (plain numpy), power iteration in doublings run until
    tr(B^2) stops rising. W = 0 returns unit vectors (sigma = 0, any pair will do)."""
    W = onp.asarray(W, dtype=float)
    if W.shape[0] < W.shape[1]:                 # iterate on the smaller Gram matrix
        v, u = singular_vectors(W.T)
        return u, v
    gram = W.T @ W                              # (n_out, n_out), eigenvalues sigma_i^2
    scale = gram.trace()
    if scale == 0:
        return onp.eye(W.shape[0])[0], onp.eye(W.shape[1])[0]
    B, spare, purity = gram / scale, onp.empty_like(gram), 0.0
    for _ in range(MAX_DOUBLINGS):
        B, spare = onp.matmul(B, B, out=spare), B  # B^2 into the other buffer: no new array per step
        purity, last = trace(B), purity         # tr(B_j^2) = sum of p_i^2: rises to 1 (1/k for a k-fold top)
        B /= purity
        if purity - last <= SETTLED:
            break
    v = B[:, B.diagonal().argmax()].copy()      # (W^T W)^(2^j) e_i, the largest column
    v /= onp.sqrt(v.dot(v))                     # |v| as linalg.norm computes it, without its checks
    u = W @ v
    u /= onp.sqrt(u.dot(u))
    return u, v


def trace(B):
    """tr(B); for 2 x 2 (the Gram matrix of a D = 2 layer's first or last weight) its one addition
    on Python floats: the same number as B.trace(), for a tenth of the call's cost."""
    return B.item(0) + B.item(3) if B.shape == (2, 2) else B.trace()


def spectral_norm(W):
    """sigma(W) = u^T W v, differentiable: autograd's gradient is u v^T."""
    u, v = singular_vectors(getval(W))
    return np.dot(u, np.dot(W, v))


def normalise(W, c):
    """W_hat = W / max(1, sigma(W) / c): spectral norm at most c, W itself where it already is."""
    return W / np.maximum(1.0, spectral_norm(W) / c)


def softplus(s):
    """log(1 + e^s), written so that it cannot overflow."""
    return np.logaddexp(0.0, s)


def sigmoid(t):
    """1 / (1 + e^-t) as (1 + tanh(t / 2)) / 2: no overflow for large |t|."""
    return 0.5 * (np.tanh(0.5 * t) + 1)


def lipswish(a, beta):
    """(phi(a), phi'(a)) for LipSwish with slope parameter beta > 0 (elementwise)."""
    t = beta * a
    s = sigmoid(t)
    return a * s / 1.1, s * (1 + t * (1 - s)) / 1.1


def tanh(a, beta=None):
    """(tanh(a), 1 - tanh^2(a)): 1-Lipschitz, smooth; no slope parameter."""
    t = np.tanh(a)
    return t, 1 - t ** 2


def elu(a, beta=None):
    """(ELU(a), ELU'(a)): a for a > 0, e^a - 1 below; 1-Lipschitz, no slope parameter."""
    below = np.where(a > 0, 0.0, a)             # never expm1 of a large a (np.minimum's gradient is 1/2 at 0)
    return np.where(a > 0, a, np.expm1(below)), np.where(a > 0, 1.0, np.exp(below))


ACTIVATIONS = {"lipswish": lipswish, "tanh": tanh, "elu": elu}

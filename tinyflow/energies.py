"""Targets known only up to a constant, for reverse-KL training: the four 2D test energies of
Rezende & Mohamed (2015, "Variational inference with normalizing flows", Table 1), a Gaussian
mixture, log Z by quadrature, and the numbers reverse KL can be judged by.

The paper's energies, exactly as in its Table 1 (target density p(z) = exp(-U(z)) / Z):

    U1(z) = 1/2 ((||z|| - 2) / 0.4)^2 - ln( exp(-1/2 ((z1 - 2) / 0.6)^2) + exp(-1/2 ((z1 + 2) / 0.6)^2) )
    U2(z) = 1/2 ((z2 - w1(z)) / 0.4)^2
    U3(z) = -ln( exp(-1/2 ((z2 - w1(z)) / 0.35)^2) + exp(-1/2 ((z2 - w1(z) + w2(z)) / 0.35)^2) )
    U4(z) = -ln( exp(-1/2 ((z2 - w1(z)) / 0.4)^2) + exp(-1/2 ((z2 - w1(z) + w3(z)) / 0.35)^2) )
    w1(z) = sin(2 pi z1 / 4),  w2(z) = 3 exp(-1/2 ((z1 - 1) / 0.6)^2),  w3(z) = 3 sigma((z1 - 1) / 0.3),
    sigma(x) = 1 / (1 + exp(-x))

Envelope. U2, U3 and U4 see z1 only through w1 (periodic) and w2, w3 (flat far out), so exp(-U)
does not decay along z1 and has no finite integral: q could lower the reverse-KL loss forever by
spreading along z1. We add E(z1) = 1/2 (z1 / 3)^4 to U2, U3, U4. It is quartic, not Gaussian,
so it is nearly flat where the paper draws its shapes (E(2) = 0.1) yet decays like exp(-z1^4):
97% of the mass lies in the paper's window [-4, 4]^2 (95% for U4, whose second branch dips to
z2 = -4) and exp(-25) is left at |z1| = 8.
Integrating out z2 first (each term is a Gaussian in z2 whatever its centre) gives these three
a closed form, a check on the quadrature:

    Z2 = 0.4 sqrt(2 pi) A,  Z3 = 2 * 0.35 sqrt(2 pi) A,  Z4 = (0.4 + 0.35) sqrt(2 pi) A,
    A = int exp(-1/2 (z1 / 3)^4) dz1 = 3 * 2^(1/4) * Gamma(1/4) / 2.

U1 (a ring with two bumps) decays in every direction and needs no envelope.

Gradients by hand. Reverse KL differentiates log p at every training step, and autograd would
record some twenty nodes for one energy, more than the flow of chapter 9 records. So log_prob is
one primitive, `log_density`: its value is the readable expression above, run on plain arrays,
and its gradient is written out in `gradient` (tests/test_energies.py holds it to autograd's):
with a = z2 - w1 and b = z2 - w1 + w2 (or + w3), and the bumps' softmax weights p_a, p_b,

    U1:  -dU/dz  = -(r - 2) / 0.4^2 z / r  + (0, -(p_l (z1 - 2) + p_r (z1 + 2)) / 0.6^2 on z1)
    U2:  -dU/dz2 = -a / 0.4^2,   -dU/dz1 = a / 0.4^2 w1' - E'
    U3, U4:  -dU/dz2 = -p_a a / s_a^2 - p_b b / s_b^2,
             -dU/dz1 =  p_a a / s_a^2 w1' + p_b b / s_b^2 (w1' - w') - E'
    w1' = pi/2 cos(pi z1 / 2),  w2' = -w2 (z1 - 1) / 0.6^2,  w3' = w3 (1 - w3 / 3) / 0.3,  E' = 2/3 (z1 / 3)^3

Shapes: z (N, 2) -> log_prob (N,).
"""
import math

import autograd.numpy as np
import numpy as onp
from autograd.extend import defvjp, primitive

from .validate import check_count, check_points, check_rng

LOG_2PI = math.log(2 * math.pi)
LOG_A = math.log(3 * 2 ** 0.25 * math.gamma(0.25) / 2)        # log int exp(-1/2 (z1/3)^4) dz1


def logsumexp(a, axis):
    """log sum exp(a) along axis, shifted by the max so no exp overflows (a float64 exp overflows at 710)."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _gauss(x, sigma):
    return -0.5 * (x / sigma) ** 2                # the exponent of an unnormalised Gaussian


def _weights(a, b):
    """The softmax weights (p_a, p_b) of two log-terms, without overflow."""
    m = onp.maximum(a, b)
    e_a, e_b = onp.exp(a - m), onp.exp(b - m)
    return e_a / (e_a + e_b), e_b / (e_a + e_b)


@primitive
def log_density(z, target):
    """target's log_prob at z (N, D), its readable expression run on plain arrays: one node.
    Backprop: g times target.gradient(z), the gradient written out."""
    return target.log_prob_plain(z)


defvjp(log_density, lambda log_p, z, target: lambda g: g[:, None] * target.gradient(z))


class Energy:
    """The target exp(-U_k(z)), k in 1..4 (with the envelope for k = 2, 3, 4); dim = 2.
    log_prob(z) = -U_k(z) is unnormalised; log_Z is the closed form above (None for U1)."""
    dim = 2

    def __init__(self, k):
        if k not in (1, 2, 3, 4):
            raise ValueError(f"k must be 1, 2, 3 or 4 (Rezende & Mohamed's U1..U4), got {k!r}")
        self.k, self.name = k, f"U{k}"
        widths = {2: 0.4, 3: 2 * 0.35, 4: 0.4 + 0.35}
        self.log_Z = None if k == 1 else math.log(widths[k]) + 0.5 * LOG_2PI + LOG_A

    def energy(self, z):
        z = check_points(z, 2, "z")
        z1, z2 = z[:, 0], z[:, 1]
        if self.k == 1:
            r = np.sqrt(z1 ** 2 + z2 ** 2)
            two = np.stack([_gauss(z1 - 2, 0.6), _gauss(z1 + 2, 0.6)], axis=1)
            return 0.5 * ((r - 2) / 0.4) ** 2 - logsumexp(two, axis=1)
        w1 = np.sin(2 * np.pi * z1 / 4)
        envelope = 0.5 * (z1 / 3) ** 4
        if self.k == 2:
            return 0.5 * ((z2 - w1) / 0.4) ** 2 + envelope
        if self.k == 3:
            w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
            two = np.stack([_gauss(z2 - w1, 0.35), _gauss(z2 - w1 + w2, 0.35)], axis=1)
        else:
            w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
            two = np.stack([_gauss(z2 - w1, 0.4), _gauss(z2 - w1 + w3, 0.35)], axis=1)
        return -logsumexp(two, axis=1) + envelope

    def log_prob_plain(self, z):
        """-U(z), the expression above with every operation on autograd's tape."""
        return -self.energy(z)

    def log_prob(self, z):
        """-U(z) (N,), as one primitive (log_density): the same values, the gradient by hand."""
        return log_density(check_points(z, 2, "z"), self)

    def gradient(self, z):
        """d log p / dz = -dU/dz, (N, 2): the derivatives in the module docstring."""
        z1, z2 = z[:, 0], z[:, 1]
        if self.k == 1:
            r = onp.sqrt(z1 ** 2 + z2 ** 2)
            radial = (r - 2) / 0.4 ** 2 / r
            p_l, p_r = _weights(_gauss(z1 - 2, 0.6), _gauss(z1 + 2, 0.6))
            return onp.stack([-radial * z1 - (p_l * (z1 - 2) + p_r * (z1 + 2)) / 0.6 ** 2, -radial * z2], axis=1)
        w1, dw1 = onp.sin(onp.pi * z1 / 2), onp.pi / 2 * onp.cos(onp.pi * z1 / 2)
        d_envelope = 2 / 3 * (z1 / 3) ** 3
        if self.k == 2:
            a = (z2 - w1) / 0.4 ** 2
            return onp.stack([a * dw1 - d_envelope, -a], axis=1)
        if self.k == 3:
            (s_a, s_b), w = (0.35, 0.35), 3 * onp.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
            dw = -w * (z1 - 1) / 0.6 ** 2
        else:
            (s_a, s_b), w = (0.4, 0.35), 3 / (1 + onp.exp(-(z1 - 1) / 0.3))
            dw = w * (1 - w / 3) / 0.3
        a, b = z2 - w1, z2 - w1 + w
        p_a, p_b = _weights(_gauss(a, s_a), _gauss(b, s_b))
        g_a, g_b = p_a * a / s_a ** 2, p_b * b / s_b ** 2
        return onp.stack([g_a * dw1 + g_b * (dw1 - dw) - d_envelope, -g_a - g_b], axis=1)


class GaussianMixture:
    """p(x) = 1/K sum_k N(x; mu_k, sigma^2 I): normalised (log Z = 0), can be sampled.
    means: (K, D). The entropy has no closed form; for D = 2 it is computed by grid_entropy
    on a box reaching 10 sigma past the farthest mean (None for D != 2)."""

    def __init__(self, means, sigma):
        self.means = check_points(means, None, "means")
        self.dim, self.sigma, self.log_Z = self.means.shape[1], float(sigma), 0.0
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        half_width = onp.abs(self.means).max() + 10 * self.sigma
        self.entropy = grid_entropy(self.log_prob, half_width, self.sigma / 10) if self.dim == 2 else None

    def sample(self, rng, n):
        rng, n = check_rng(rng), check_count(n)
        k = rng.integers(len(self.means), size=n)             # equal weights
        return self.means[k] + self.sigma * rng.standard_normal((n, self.dim))

    def log_prob_plain(self, x):
        """log p(x), every operation on autograd's tape."""
        x = check_points(x, self.dim)
        sq = np.sum((x[:, None, :] - self.means[None, :, :]) ** 2, axis=2)      # (N, K)
        log_n = -0.5 * sq / self.sigma ** 2 - self.dim * (np.log(self.sigma) + 0.5 * LOG_2PI)
        return logsumexp(log_n, axis=1) - np.log(len(self.means))

    def log_prob(self, x):
        """log p(x) (N,), as one primitive (log_density): the same values, the gradient by hand."""
        return log_density(check_points(x, self.dim), self)

    def gradient(self, x):
        """d log p / dx = sum_k r_k (mu_k - x) / sigma^2, r_k the components' responsibilities: (N, D)."""
        log_n = -0.5 * onp.sum((x[:, None, :] - self.means[None, :, :]) ** 2, axis=2) / self.sigma ** 2
        r = onp.exp(log_n - log_n.max(axis=1, keepdims=True))
        r /= r.sum(axis=1, keepdims=True)
        return (r @ self.means - x) / self.sigma ** 2


def _grid_log_p(log_p, half_width, spacing):
    """log_p at the cell midpoints of [-w, w]^2 with cell side `spacing`: (M,) values."""
    n = int(round(2 * half_width / spacing))
    c = -half_width + spacing * (onp.arange(n) + 0.5)
    z1, z2 = onp.meshgrid(c, c)
    return onp.asarray(log_p(onp.stack([z1.ravel(), z2.ravel()], axis=1)))


def grid_log_Z(log_p, half_width=8.0, spacing=0.02):
    """log Z = log int exp(log_p(z)) dz by the midpoint rule on [-w, w]^2, summed in log space:
    log Z = logsumexp(log_p(cells)) + log(spacing^2). For a smooth density that has died out
    by the box's edge this converges faster than any power of the spacing."""
    return float(logsumexp(_grid_log_p(log_p, half_width, spacing), axis=0)) + 2 * math.log(spacing)


def grid_entropy(log_p, half_width=8.0, spacing=0.02):
    """H(p) = -int p log p dz for a normalised 2D log_p, by the same midpoint rule."""
    lp = _grid_log_p(log_p, half_width, spacing)
    return float(-onp.sum(onp.exp(lp) * lp) * spacing ** 2)


def reverse_report(flow, params, log_p, log_Z, rng, n=100_000):
    """What reverse KL reaches, on n fresh samples x ~ q with log weights log w = log p~(x) - log q(x):

        loss      = mean(log q - log p~)                 (the training loss; its floor is -log Z)
        KL(q||p)  = loss + log Z  +- std / sqrt(n)        (exact, because log Z is known)
        ESS / n   = (sum w)^2 / (n sum w^2)               (1 when q = p; computed in log space)
        log Z_IS  = log mean w                            (importance-sampling estimate of log Z)
    """
    x, log_q = flow.sample_and_log_prob(params, rng, n)
    log_w = onp.asarray(log_p(x)) - onp.asarray(log_q)
    ess = math.exp(2 * logsumexp(log_w, axis=0) - logsumexp(2 * log_w, axis=0)) / n
    loss = -log_w.mean()
    return {"n": n, "loss": loss, "log_Z": log_Z, "kl": loss + log_Z,
            "kl_se": log_w.std(ddof=1) / math.sqrt(n), "ess": ess,
            "log_Z_is": float(logsumexp(log_w, axis=0)) - math.log(n)}


def format_reverse_report(report, label):
    return (f"{label}: loss {report['loss']:.4f} (floor -log Z = {0.0 - report['log_Z']:.4f}), "
            f"KL(q||p) = {report['kl']:.4f} +- {report['kl_se']:.4f}, ESS = {100 * report['ess']:.1f}% "
            f"(log Z by IS {report['log_Z_is']:.4f}; n = {report['n']})")

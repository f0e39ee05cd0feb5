"""The chapters' target distributions, each with sample(rng, n), log_prob(x) and entropy.

The entropy H(p) = -E_p[log p(x)] is the lowest expected NLL any model can reach, so a held-out
NLL can be read against it: NLL - H(p) = KL(p || q) >= 0.

    ShiftedGaussian:            x ~ N((5, 5), 0.5^2 I)
        H = D/2 log(2 pi e) + D log 0.5 = 1 + log(2 pi) - 2 log 2 = 1.45158
    UniformConditionalGaussian: a ~ U[1, 2], b | a ~ N(a, a)   (variance a)
        H = H(a) + E_a[H(b | a)] = 0 + E_a[1/2 log(2 pi e a)] = 1/2 log(2 pi e) + 1/2 (2 log 2 - 1)
          = 1.61209      (H(U[1, 2]) = log 1 = 0 and E[log a] = [a log a - a]_1^2 = 2 log 2 - 1)
    Banana:                     x2 ~ N(0, 4^2), x1 | x2 ~ N(x2^2 / 4, 1);  x = (x1, x2)
        H = 1/2 log(2 pi e 16) + 1/2 log(2 pi e) = log(2 pi e) + log 4 = 4.22417
    Checkerboard:               uniform on the 8 squares of side 2 in [-4, 4]^2 whose cell indices
                                (floor(x1 / 2), floor(x2 / 2)) have an even sum
        H = log(area) = log(8 * 2^2) = log 32 = 3.46574
"""
import autograd.numpy as np

from .distributions import LOG_2PI
from .validate import check_count, check_points, check_rng


def _normal_log_prob(x, mu, var):
    return -0.5 * (x - mu) ** 2 / var - 0.5 * np.log(var) - 0.5 * LOG_2PI


class ShiftedGaussian:
    dim = 2
    loc, scale = 5.0, 0.5
    entropy = 1 + LOG_2PI + 2 * np.log(0.5)

    def sample(self, rng, n):
        return self.loc + self.scale * check_rng(rng).standard_normal((check_count(n), 2))

    def log_prob(self, x):
        x = check_points(x, 2)
        return np.sum(_normal_log_prob(x, self.loc, self.scale ** 2), axis=1)


class UniformConditionalGaussian:
    """x = (a, b): a ~ U[1, 2], b | a ~ N(a, a). Density zero (log -inf) for a outside [1, 2]."""
    dim = 2
    entropy = 0.5 * (1 + LOG_2PI) + 0.5 * (2 * np.log(2) - 1)

    def sample(self, rng, n):
        rng, n = check_rng(rng), check_count(n)
        a = rng.uniform(1, 2, n)
        b = a + np.sqrt(a) * rng.standard_normal(n)
        return np.stack([a, b], axis=1)

    def log_prob(self, x):
        x = check_points(x, 2)
        a, b = x[:, 0], x[:, 1]
        inside = (a >= 1) & (a <= 2)
        a_safe = np.where(inside, a, 1.5)               # keep log(a) finite outside the support
        return np.where(inside, _normal_log_prob(b, a_safe, a_safe), -np.inf)


class Banana:
    """x = (x1, x2): x2 ~ N(0, 4^2), x1 | x2 ~ N(x2^2 / 4, 1)."""
    dim = 2
    entropy = 1 + LOG_2PI + np.log(4)

    def sample(self, rng, n):
        rng, n = check_rng(rng), check_count(n)
        x2 = 4 * rng.standard_normal(n)
        x1 = x2 ** 2 / 4 + rng.standard_normal(n)
        return np.stack([x1, x2], axis=1)

    def log_prob(self, x):
        x = check_points(x, 2)
        x1, x2 = x[:, 0], x[:, 1]
        return _normal_log_prob(x2, 0.0, 16.0) + _normal_log_prob(x1, x2 ** 2 / 4, 1.0)


class Checkerboard:
    """Uniform on 8 of the 16 squares of side 2 that tile [-4, 4)^2: those whose cell indices
    i = floor(x1 / 2), j = floor(x2 / 2) (each in -2..1) have i + j even. p = 1/32 there and 0
    (log -inf) elsewhere, so the density jumps at every square's edge."""
    dim = 2
    entropy = np.log(32.0)

    def sample(self, rng, n):
        rng, n = check_rng(rng), check_count(n)
        x1 = rng.uniform(-4, 4, n)
        i = np.floor(x1 / 2)
        j = 2 * rng.integers(0, 2, n) - 2 + i % 2          # -2 or 0 if i is even, -1 or 1 if odd
        x2 = 2 * (j + rng.uniform(0, 1, n))
        return np.stack([x1, x2], axis=1)

    def log_prob(self, x):
        x = check_points(x, 2)
        inside = np.all((x >= -4) & (x < 4), axis=1)
        cells = np.floor(x / 2)
        black = (cells[:, 0] + cells[:, 1]) % 2 == 0
        return np.where(inside & black, -np.log(32.0), -np.inf)

"""The chapters' targets: log_prob is a normalised density, samples follow it, and the stated
entropy is -E[log p]. Quadrature boxes are chosen from the known densities (see each case)."""
import numpy as np
import pytest

import tinyflow as tf
from strategies_core import CHI2_64_BOUND, histogram_chi2, integrate_2d

# (box lo, box hi, cells): each box misses less than 1e-9 of the mass.
BOXES = {
    # N((5, 5), 0.5^2): +-8 sd
    "ShiftedGaussian": ([1.0, 1.0], [9.0, 9.0], 200),
    # a ~ U[1, 2]: cell edges land on 1 and 2 (0.01 wide), so the jump sits between cells and the
    # midpoint rule is exact in a; b | a ~ N(a, a): b in [-9, 13] is beyond 7 sd for every a
    "UniformConditionalGaussian": ([0.5, -9.0], [2.5, 13.0], (200, 600)),
    # x2 ~ N(0, 16): |x2| <= 28 is 7 sd; x1 | x2 ~ N(x2^2 / 4, 1) lies in [-8, 196 + 8]
    "Banana": ([-8.0, -28.0], [204.0, 28.0], (1600, 400)),
    # uniform on squares of side 2 in [-4, 4]^2: cells 0.02 wide put every edge between cells, so
    # the midpoint rule is exact; the box reaches past [-4, 4] to see that nothing lies outside
    "Checkerboard": ([-5.0, -5.0], [5.0, 5.0], 500),
}
TARGETS = sorted(BOXES)
# histogram_chi2 integrates each bin by a 20 x 20 midpoint rule, exact only for smooth densities;
# the checkerboard's jumps get their own test on bins aligned with its squares (below)
SMOOTH = [name for name in TARGETS if name != "Checkerboard"]


@pytest.mark.parametrize("name", TARGETS)
def test_target_density_integrates_to_one(name):
    target = getattr(tf, name)()
    lo, hi, cells = BOXES[name]
    total = integrate_2d(target.log_prob, lo, hi, cells)
    print(f"{name}: integral of p = {total:.12f}")
    assert abs(total - 1) < 1e-3


@pytest.mark.parametrize("name", SMOOTH)
def test_target_samples_follow_log_prob(name):
    target = getattr(tf, name)()
    pilot, x = target.sample(np.random.default_rng(1), 2000), target.sample(np.random.default_rng(2), 100_000)
    chi2 = histogram_chi2(x, pilot, target.log_prob)
    print(f"{name}: chi^2 = {chi2:.1f} on 64 degrees of freedom")
    assert chi2 < CHI2_64_BOUND


@pytest.mark.parametrize("name", TARGETS)
def test_entropy_is_minus_mean_log_prob(name):
    """Monte Carlo: -mean log p(x) over 2e5 samples, within 5 standard errors of the stated H."""
    target = getattr(tf, name)()
    log_p = target.log_prob(target.sample(np.random.default_rng(3), 200_000))
    estimate, se = -log_p.mean(), log_p.std() / np.sqrt(len(log_p))
    print(f"{name}: H = {target.entropy:.5f}, Monte Carlo {estimate:.5f} +- {se:.5f}")
    assert abs(estimate - target.entropy) < 5 * se + 1e-12     # the checkerboard's log p is constant: se = 0


def test_known_moments():
    rng = np.random.default_rng(4)
    n = 200_000
    checks = {   # (statistic of the samples, exact value, its standard deviation per sample)
        "ShiftedGaussian mean x1": (tf.ShiftedGaussian().sample(rng, n)[:, 0], 5.0, 0.5),
        "UniformConditionalGaussian mean b": (tf.UniformConditionalGaussian().sample(rng, n)[:, 1], 1.5, np.sqrt(1.5 + 1 / 12)),
        "Banana mean x1": (tf.Banana().sample(rng, n)[:, 0], 4.0, np.sqrt(2 * 16 ** 2 / 16 + 1)),   # Var x1 = Var(x2^2) / 16 + 1 = 33
        "Checkerboard mean x2": (tf.Checkerboard().sample(rng, n)[:, 1], 0.0, np.sqrt(64 / 12)),   # U[-4, 4] marginal
    }
    for label, (values, exact, sd) in checks.items():
        se = sd / np.sqrt(n)
        print(f"{label}: {values.mean():.4f} vs {exact} (se {se:.4f})")
        assert abs(values.mean() - exact) < 5 * se, label


def test_uniform_conditional_gaussian_is_zero_outside_its_support():
    log_p = tf.UniformConditionalGaussian().log_prob(np.array([[0.99, 1.0], [2.01, 2.0], [1.5, 1.5]]))
    assert np.all(np.isneginf(log_p[:2])) and np.isfinite(log_p[2])


@pytest.mark.parametrize("name", TARGETS)
def test_same_seed_gives_same_samples(name):
    target = getattr(tf, name)()
    first = target.sample(np.random.default_rng(9), 50)
    assert np.array_equal(first, target.sample(np.random.default_rng(9), 50))
    assert first.shape == (50, 2) and first.dtype == np.float64


def test_checkerboard_is_one_over_32_on_black_squares_and_zero_elsewhere():
    x = np.array([[-3.0, -3.0], [-1.0, -1.0], [1.0, 1.0], [3.0, 3.0], [-3.0, 1.0], [1.0, -3.0],   # black
                  [-1.0, -3.0], [1.0, -1.0], [3.0, 1.0], [-3.0, 3.0],                             # white
                  [4.5, 0.5], [-0.5, -4.5], [5.0, 5.0]])                                         # outside
    log_p = tf.Checkerboard().log_prob(x)
    assert np.all(log_p[:6] == -np.log(32)) and np.all(np.isneginf(log_p[6:]))


def test_checkerboard_samples_follow_log_prob():
    """Bins of side 1/2 aligned with the squares: each of the 128 bins on black squares has
    probability 1/128 (chi^2 on 127 degrees of freedom: mean 127, sd 15.9; 6 sd above is 223),
    and no sample lands on a white square or outside [-4, 4]^2."""
    n = 200_000
    x = tf.Checkerboard().sample(np.random.default_rng(5), n)
    edges = np.linspace(-4, 4, 17)
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])[0]
    centres = np.stack(np.meshgrid(edges[:-1] + 0.25, edges[:-1] + 0.25, indexing="ij"), axis=-1).reshape(-1, 2)
    black = np.isfinite(tf.Checkerboard().log_prob(centres)).reshape(16, 16)
    assert counts.sum() == n and np.all(counts[~black] == 0) and black.sum() == 128
    expected = n / 128
    chi2 = np.sum((counts[black] - expected) ** 2 / expected)
    print(f"Checkerboard: chi^2 = {chi2:.1f} on 127 degrees of freedom")
    assert chi2 < 223

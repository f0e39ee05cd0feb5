"""The spline's inverse against a 60-digit reference (mpmath) of the same float64 spline: x within
1e-12 and the log-det within 1e-9 on knots, a hair from knots (1e-15 to 1e-10 either side),
exactly at +-B and with extreme logits (+-20, where bins and derivatives sit at their floors and
slopes far below a bin's average occur). The textbook root was off by up to 3e-4 in the log-det
here (nflows and zuko use it); spline.py's cancellation-free root is at a few ulps.

The reference takes the knots the primitive itself computed for that batch: the knots are a
matrix product whose last bit depends on the batch size, and a spline is so steep near some knots
that one ulp of a knot moves the log-det by 1e-4."""
import mpmath
import numpy as np
import pytest

from tinyflow.spline import knots, rational_quadratic_plain
from tinyflow.spline_backprop import knot_rows, rational_quadratic

mpmath.mp.dps = 60
BOUND, NUM_BINS = 3.0, 8
OFFSETS = (0.0, 1e-15, -1e-15, 1e-12, -1e-12, 1e-10, -1e-10, 1e-6, -1e-6)


def reference(v, x_knots, y_knots, d, inverse):
    """(out, log_det) of the spline with these knots, in 60-digit arithmetic; the quadratic's
    textbook root is fine at 60 digits (it loses at most ~30 of them)."""
    v, B = mpmath.mpf(float(v)), mpmath.mpf(BOUND)
    if not -B <= v <= B:
        return v, mpmath.mpf(0)
    knots_v = y_knots if inverse else x_knots
    k = min(max(j for j in range(NUM_BINS) if mpmath.mpf(float(knots_v[j])) <= v), NUM_BINS - 1)
    x_k, x_k1, y_k, y_k1, d_k, d_k1 = (mpmath.mpf(float(a)) for a in (x_knots[k], x_knots[k + 1], y_knots[k],
                                                                      y_knots[k + 1], d[k], d[k + 1]))
    w, h = x_k1 - x_k, y_k1 - y_k
    s, delta = h / w, d_k + d_k1 - 2 * h / w
    if inverse:
        dy = v - y_k
        a, b, c = h * (s - d_k) + dy * delta, h * d_k - dy * delta, -s * dy
        xi = 2 * c / (-b - mpmath.sqrt(b * b - 4 * a * c))
    else:
        xi = (v - x_k) / w
    t = xi * (1 - xi)
    denom = s + delta * t
    log_slope = mpmath.log(s ** 2 * (d_k1 * xi ** 2 + 2 * s * t + d_k * (1 - xi) ** 2) / denom ** 2)
    if inverse:
        return x_k + w * xi, -log_slope
    return y_k + h * (s * xi ** 2 + d_k * t) / denom, log_slope


def draws(seed, count):
    """theta (1, 3K - 1) of both kinds: N(0, 3^2) logits, and extreme ones (-20, 0, 20) at every floor."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        if i % 2:
            yield rng.choice([-20.0, 0.0, 20.0], size=(1, 3 * NUM_BINS - 1)), rng
        else:
            yield 3.0 * rng.standard_normal((1, 3 * NUM_BINS - 1)), rng


def points(theta, inverse, rng):
    """Every knot (of y for the inverse, of x forward) and OFFSETS either side of it, clipped to
    [-B, B] (so +-B itself is hit), and uniform points in between."""
    knots = knot_rows(theta, BOUND)[0][0, int(inverse)]
    near = np.clip([k + o for k in knots for o in OFFSETS], -BOUND, BOUND)
    return np.concatenate([near, rng.uniform(-BOUND, BOUND, 16)])[:, None]


def primitive_knots(theta, n):
    """The knots rational_quadratic computes for a batch of n points: (x (n, K + 1), y, d)."""
    xy, d, _ = knot_rows(np.broadcast_to(theta, (n, theta.shape[1])), BOUND)
    return xy[:, 0], xy[:, 1], d


def plain_knots(theta, n):
    """The knots rational_quadratic_plain computes (a cumsum: the same for every point)."""
    return tuple(np.broadcast_to(np.asarray(a)[0], (n, NUM_BINS + 1)) for a in knots(theta, BOUND))


def worst_errors(fn, knots_of, inverse, seed, count):
    worst_out = worst_log_det = 0.0
    for theta, rng in draws(seed, count):
        v = points(theta, inverse, rng)
        out, log_det = fn(v, theta, BOUND, inverse)
        x_knots, y_knots, d = knots_of(theta, len(v))
        for j in range(len(v)):
            ref_out, ref_log_det = reference(v[j, 0], x_knots[j], y_knots[j], d[j], inverse)
            worst_out = max(worst_out, abs(float(ref_out) - out[j, 0]))
            worst_log_det = max(worst_log_det, abs(float(ref_log_det) - log_det[j, 0]))
    return worst_out, worst_log_det


@pytest.mark.parametrize("seed", [0, 1])
def test_inverse_matches_a_60_digit_reference_near_knots_and_at_the_ends(seed):
    worst_x, worst_log_det = worst_errors(rational_quadratic, primitive_knots, True, seed, 24)
    assert worst_x <= 1e-12 and worst_log_det <= 1e-9, (worst_x, worst_log_det)


def test_forward_matches_a_60_digit_reference_near_knots_and_at_the_ends():
    worst_y, worst_log_det = worst_errors(rational_quadratic, primitive_knots, False, 2, 24)
    assert worst_y <= 1e-12 and worst_log_det <= 1e-9, (worst_y, worst_log_det)


def test_the_plain_expression_is_as_accurate_as_the_primitive():
    """The readable version solves with the same cancellation-free root, on its own knots."""
    worst_x, worst_log_det = worst_errors(rational_quadratic_plain, plain_knots, True, 3, 12)
    assert worst_x <= 1e-12 and worst_log_det <= 1e-9, (worst_x, worst_log_det)

"""Properties of tinyflow/energies.py: the paper's formulas, normalisation by quadrature, the
mixture sampler against its density, input validation and the reverse-KL report."""
import math

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from hypothesis import given
from hypothesis import strategies as st

import tinyflow
from tinyflow.energies import (Energy, GaussianMixture, grid_entropy, grid_log_Z, logsumexp,
                               reverse_report)

ENERGIES = [Energy(k) for k in (1, 2, 3, 4)]
coordinate = st.floats(-6, 6, allow_nan=False)


def midpoints(half_width, spacing):
    c = -half_width + spacing * (np.arange(int(round(2 * half_width / spacing))) + 0.5)
    z1, z2 = np.meshgrid(c, c)
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


@pytest.mark.parametrize("energy", ENERGIES, ids=lambda e: e.name)
def test_density_integrates_to_one_on_an_independent_grid(energy):
    # Z from the library's grid (spacing 0.05, box 8); the integral on a different grid (spacing
    # 0.03, box 9: no cell centre in common) with plain exp and sum, no log-space shortcut.
    log_Z = grid_log_Z(energy.log_prob, 8.0, 0.05)
    z = midpoints(9.0, 0.03)
    assert abs(np.sum(np.exp(energy.log_prob(z) - log_Z)) * 0.03 ** 2 - 1) < 1e-9


@pytest.mark.parametrize("energy", ENERGIES[1:], ids=lambda e: e.name)
def test_quadrature_matches_the_closed_form(energy):
    assert abs(grid_log_Z(energy.log_prob, 12.0, 0.05) - energy.log_Z) < 1e-10


def test_ring_log_Z_matches_polar_quadrature():
    # U1 has no closed form: integrate in polar coordinates, dz = r dr dtheta, a different rule.
    r = (np.arange(4000) + 0.5) * 0.002                  # r in (0, 8)
    theta = (np.arange(500) + 0.5) * 2 * np.pi / 500     # periodic: the midpoint rule is spectral
    R, T = np.meshgrid(r, theta)
    z = np.stack([(R * np.cos(T)).ravel(), (R * np.sin(T)).ravel()], axis=1)
    integral = np.sum(np.exp(ENERGIES[0].log_prob(z)) * R.ravel()) * 0.002 * 2 * np.pi / 500
    assert abs(math.log(integral) - grid_log_Z(ENERGIES[0].log_prob)) < 1e-6


@pytest.mark.parametrize("energy", ENERGIES, ids=lambda e: e.name)
def test_log_Z_is_stable_under_refinement_and_a_wider_box(energy):
    log_Z = grid_log_Z(energy.log_prob, 8.0, 0.05)
    assert abs(grid_log_Z(energy.log_prob, 8.0, 0.025) - log_Z) < 1e-9
    assert abs(grid_log_Z(energy.log_prob, 12.0, 0.05) - log_Z) < 1e-9


@given(coordinate, coordinate)
def test_energies_follow_the_papers_formulas(z1, z2):
    # Table 1 of Rezende & Mohamed (2015), written out with math on one point, plus the envelope.
    w1 = math.sin(2 * math.pi * z1 / 4)
    w2 = 3 * math.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
    g = lambda u, s: math.exp(-0.5 * (u / s) ** 2)
    envelope = 0.5 * (z1 / 3) ** 4
    expected = [0.5 * ((math.hypot(z1, z2) - 2) / 0.4) ** 2 - math.log(g(z1 - 2, 0.6) + g(z1 + 2, 0.6)),
                0.5 * ((z2 - w1) / 0.4) ** 2 + envelope,
                -math.log(g(z2 - w1, 0.35) + g(z2 - w1 + w2, 0.35) + 1e-300) + envelope,
                -math.log(g(z2 - w1, 0.4) + g(z2 - w1 + w3, 0.35) + 1e-300) + envelope]
    for energy, U in zip(ENERGIES, expected):
        if U < 600:                                       # where math.exp has not underflowed
            assert energy.energy(np.array([[z1, z2]]))[0] == pytest.approx(U, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("energy", ENERGIES, ids=lambda e: e.name)
def test_log_prob_has_one_value_per_point(energy):
    assert energy.log_prob(np.zeros((7, 2)) + 0.3).shape == (7,)


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((3, 3)), np.array([[0.0, np.nan]])])
def test_log_prob_rejects_points_that_are_not_finite_n_by_2(bad):
    with pytest.raises(ValueError):
        ENERGIES[0].log_prob(bad)


@pytest.mark.parametrize("k", [0, 5, "U1", 2.5])
def test_energy_rejects_an_unknown_index(k):
    with pytest.raises(ValueError, match="1, 2, 3 or 4"):
        Energy(k)


@given(st.lists(st.floats(-700, 700), min_size=1, max_size=6))
def test_logsumexp_matches_the_naive_formula_without_overflow(values):
    a = np.array(values)
    shift = a.max()
    assert logsumexp(a, axis=0) == pytest.approx(shift + math.log(np.sum(np.exp(a - shift))), abs=1e-12)


MIXTURE = GaussianMixture([[-2.5, -2.5], [-2.5, 2.5], [2.5, -2.5], [2.5, 2.5]], sigma=0.5)


def test_mixture_density_integrates_to_one():
    assert abs(grid_log_Z(MIXTURE.log_prob, 8.0, 0.05)) < 1e-10


def test_mixture_sampler_matches_density_on_a_histogram():
    # 4 x 4 cells of side 2.5: each cell's sample count vs n * (the density integrated over it)
    n = 200_000
    x = MIXTURE.sample(np.random.default_rng(1), n)
    edges = np.linspace(-5, 5, 5)
    counts = np.histogram2d(x[:, 0], x[:, 1], [edges, edges])[0].ravel()
    fine = midpoints(5.0, 0.02)
    mass = np.exp(MIXTURE.log_prob(fine)) * 0.02 ** 2
    cell = np.histogram2d(fine[:, 0], fine[:, 1], [edges, edges], weights=mass)[0].ravel()
    z = (counts - n * cell) / np.sqrt(n * cell * (1 - cell))
    assert np.all(np.abs(z) < 5)


def test_mixture_sample_mean_and_mean_log_prob_match_the_entropy():
    x = MIXTURE.sample(np.random.default_rng(2), 100_000)
    assert np.all(np.abs(x.mean(axis=0)) < 0.05)          # std of the mean: 2.55 / sqrt(1e5) = 0.008
    log_p = MIXTURE.log_prob(x)
    assert abs(-log_p.mean() - MIXTURE.entropy) < 5 * log_p.std() / np.sqrt(len(x))


def test_mixture_entropy_is_log_k_plus_the_gaussian_entropy_when_modes_are_far_apart():
    # 10 sigma apart: the overlap correction is below 1e-5 nats
    assert abs(MIXTURE.entropy - (math.log(4) + math.log(2 * math.pi * math.e * 0.25))) < 1e-5


def test_grid_entropy_of_a_standard_normal():
    normal = GaussianMixture([[0.0, 0.0]], sigma=1.0)
    assert abs(grid_entropy(normal.log_prob) - math.log(2 * math.pi * math.e)) < 1e-10


def test_mixture_rejects_a_non_positive_sigma():
    with pytest.raises(ValueError, match="sigma"):
        GaussianMixture([[0.0, 0.0]], sigma=0.0)


def test_reverse_report_is_exact_when_q_equals_p():
    # q = N(0, I) (an identity flow) and p~ = 3 N(0, I): KL = 0, ESS = 1, loss = -log 3 exactly
    flow = tinyflow.Flow(tinyflow.StandardNormal(2), [tinyflow.Reverse()])
    params = flow.init(np.random.default_rng(0))
    log_p = lambda x: -0.5 * np.sum(x ** 2, axis=1) - math.log(2 * math.pi) + math.log(3)
    report = reverse_report(flow, params, log_p, math.log(3), np.random.default_rng(0), 1000)
    assert abs(report["kl"]) < 1e-12 and abs(report["ess"] - 1) < 1e-12
    assert abs(report["loss"] + math.log(3)) < 1e-12 and abs(report["log_Z_is"] - math.log(3)) < 1e-12


def test_reverse_report_kl_matches_the_closed_form_for_a_shifted_gaussian():
    # q = N(0, I), p = N((1, 0), I) unnormalised by Z = 2: KL(q || p) = |mu|^2 / 2 = 0.5,
    # ESS / n -> exp(-|mu|^2) = 0.368 for large n
    flow = tinyflow.Flow(tinyflow.StandardNormal(2), [tinyflow.Reverse()])
    params = flow.init(np.random.default_rng(0))
    log_p = lambda x: (-0.5 * np.sum((x - [1.0, 0.0]) ** 2, axis=1) - math.log(2 * math.pi)
                       + math.log(2))
    report = reverse_report(flow, params, log_p, math.log(2), np.random.default_rng(3), 200_000)
    assert abs(report["kl"] - 0.5) < 5 * report["kl_se"]
    assert abs(report["ess"] - math.exp(-1)) < 0.02


TARGETS = {**{f"U{k}": Energy(k) for k in (1, 2, 3, 4)},
           "mixture": GaussianMixture(np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]]), 0.4)}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_log_prob_is_the_readable_expression_to_the_last_digit(name):
    z = np.random.default_rng(1).standard_normal((200, 2)) * 3
    assert np.array_equal(TARGETS[name].log_prob(z), TARGETS[name].log_prob_plain(z))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_gradient_by_hand_is_autograds_gradient_of_the_readable_expression(name):
    """Near the modes and far out (|z| up to ~60, where the bumps' weights saturate)."""
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.standard_normal((500, 2)) * 2, rng.standard_normal((50, 2)) * 20])
    weights = rng.standard_normal(len(z))                 # a VJP with an arbitrary incoming gradient
    target = TARGETS[name]
    expected = grad(lambda z: anp.sum(weights * target.log_prob_plain(z)))(z)
    got = grad(lambda z: anp.sum(weights * target.log_prob(z)))(z)
    assert np.max(np.abs(got - expected) / np.maximum(1, np.abs(expected))) <= 1e-12   # measured <= 3e-14

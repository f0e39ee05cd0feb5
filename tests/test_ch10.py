"""Chapter 10 in --quick mode: the 1D spline passes through the knots computed from the
formulas, inverts to rounding error, is C^1 at +-B and pushes N(0, 1) to a density that
integrates to the right mass; the two forward-KL targets' entropies check out; the spline and
affine flows have (nearly) equal parameter counts; every report is consistent; every claim is
printed once, with its kind; no claim is about time; the figures are written."""
import math
import re

import pytest

from chapter_runner import NUMBER, claim_lines, numbers, parse_report, run_chapter

FIGURES = ["ch10_spline_1d.png", "ch10_forward_kl.png", "ch10_reverse_kl.png"]
TARGETS, KINDS, ENERGIES = ["ring", "checkerboard"], ["affine", "spline"], ["U1", "U2", "U3", "U4"]
CLAIMS = {  # label: kind, in the order the chapter prints them
    "round trip, max |g^-1(g(x)) - x|": "exact",
    "inverse log-det, max |log g'(x) + log|dg^-1/dy|(g(x))|": "exact",
    "ring: spline paired KL": "bound", "ring: spline KL / affine KL": "bound",
    "checkerboard: spline paired KL": "bound", "checkerboard: spline KL / affine KL": "bound",
    "checkerboard, spline: share of samples where p = 0": "bound",
    "the affine flow leaks at least 1.5 times the spline flow's share, on both targets": "frequency",
    **{f"{energy} spline IAF KL(q||p)": "bound" for energy in ["U1", "U2", "U3"]},
    "U4 spline IAF KL(q||p) at most 0.04": "frequency",          # U4 swings (Notes on the numbers)
    "smallest ESS of U1-U4 at least 90%": "frequency",
    "KL(q||p) <= 0.02 and ESS >= 90% on all four energies": "frequency",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch10")
    return run_chapter("ch10_neural_splines.py", tmp_path), tmp_path


def test_layer_passes_through_the_knots_computed_from_the_formulas(run):
    y_error, slope_error = numbers(rf"the layer at the knots: max \|g\(x_k\) - y_k\| = {NUMBER}, "
                                   rf"max \|g'\(x_k\) - d_k\| = {NUMBER}", run[0])
    assert y_error < 1e-12 and slope_error < 1e-10


def test_zero_theta_is_the_identity(run):
    move, log_det = numbers(rf"theta = 0: max \|g\(x\) - x\| = {NUMBER}, max \|log g'\(x\)\| = {NUMBER}", run[0])
    assert move < 1e-14 and log_det < 1e-14


def test_round_trip_and_inverse_log_det_are_exact_to_rounding(run):
    claims = {claim["label"]: claim for claim in claim_lines(run[0])}
    for label, tol in [("round trip, max |g^-1(g(x)) - x|", 1e-11),
                       ("inverse log-det, max |log g'(x) + log|dg^-1/dy|(g(x))|", 1e-10)]:
        assert claims[label]["kind"] == "exact" and claims[label]["expected"] == 0
        assert claims[label]["tol"] == tol and claims[label]["value"] <= 1e-12   # tol: the worst of 20 full runs


def test_spline_is_strictly_increasing_on_the_grid(run):
    smallest, = numbers(rf"smallest increment g\(x_\(i\+1\)\) - g\(x_i\) on the grid: {NUMBER} > 0", run[0])
    assert smallest > 0


def test_log_slope_matches_a_central_difference(run):
    error, = numbers(rf"max \|log g'\(x\) - log of the central difference \(h = 1e-06\)\| = {NUMBER}", run[0])
    assert error < 1e-6


@pytest.mark.parametrize("edge", ["-3", "+3"])
def test_slope_is_one_on_both_sides_of_the_bound(edge, run):
    left, right, inside, outside = numbers(rf"slope at x = {re.escape(edge)}: from the left {NUMBER}, from the right "
                                           rf"{NUMBER}; log g' just inside {NUMBER}, just outside {NUMBER}", run[0])
    assert abs(left - 1) < 1e-3 and abs(right - 1) < 1e-3      # one-sided quotients err by h g''/2
    assert abs(inside) < 1e-6 and outside == 0


def test_pushed_forward_density_holds_the_gaussian_mass_of_the_window(run):
    mass, exact = numbers(rf"integral of q over \[-4.5, 4.5\] \(trapezoid rule\): {NUMBER}; .* = {NUMBER}", run[0])
    assert exact == round(math.erf(4.5 / math.sqrt(2)), 6) and abs(mass - exact) < 1e-4


def test_ring_entropy_by_quadrature_is_near_the_separated_modes_formula(run):
    quadrature, separated = numbers(rf"ring: entropy by quadrature {NUMBER}; log 8 \+ log\(2 pi e sigma\^2\) = {NUMBER}",
                                    run[0])
    assert separated == round(math.log(8) + 1 + math.log(2 * math.pi) + 2 * math.log(0.3), 5)
    assert 0 < separated - quadrature < 1e-3      # overlap lowers the entropy, barely


def test_checkerboard_entropy_is_log_32(run):
    assert f"checkerboard: entropy log 32 = {math.log(32):.5f}" in run[0]


@pytest.mark.parametrize("name", TARGETS)
def test_monte_carlo_entropy_agrees_within_five_standard_errors(name, run):
    estimate, se = numbers(rf"{name}: Monte Carlo -mean log p = {NUMBER} \+- {NUMBER}", run[0])
    entropy = {"ring": numbers(rf"ring: entropy by quadrature {NUMBER}", run[0])[0], "checkerboard": math.log(32)}[name]
    assert abs(estimate - entropy) <= 5 * se + 1e-5


def test_both_flows_have_nearly_the_same_number_of_parameters(run):
    counts = {kind: int(re.search(rf"{kind} flow: \d+ couplings, ([\d,]+) parameters", run[0]).group(1).replace(",", ""))
              for kind in KINDS}
    assert counts == {"affine": 10_624, "spline": 10_684}
    assert abs(counts["affine"] - counts["spline"]) < 0.02 * counts["spline"]


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("kind", KINDS)
def test_report_gap_is_nll_minus_entropy(name, kind, run):
    report = parse_report(f"{name}, {kind} after 20 steps", run[0])
    assert abs(report["nll"] - report["entropy"] - report["gap"]) < 2e-5 and report["kl_se"] > 0
    if name == "checkerboard":          # log p is the constant -log 32 on samples of p
        assert abs(report["kl"] - report["gap"]) < 2e-5


def test_ring_target_share_beyond_three_sd_is_printed_beside_exp_minus_nine_halves(run):
    share, exact = numbers(rf"ring target: share farther than 3 sd from every mode {NUMBER} "
                           rf"\(exp\(-9/2\) = {NUMBER}\)", run[0])
    assert exact == 0.0111 and 0 <= share <= 1


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert [claim["label"] for claim in claims] == list(CLAIMS)
    assert {claim["label"]: claim["kind"] for claim in claims} == CLAIMS
    assert all(claim["quick"] and not claim["flagged"] for claim in claims)


def test_no_claim_is_about_time(run):
    assert not [claim for claim in claim_lines(run[0])
                if re.search(r"\btime\b|\bCPU\b|\bms\b|\bseconds?\b", claim["label"])]


def test_bounds_point_the_right_way(run):
    claims = {claim["label"]: claim for claim in claim_lines(run[0])}
    for label, claim in claims.items():
        if claim["kind"] == "bound":
            assert ("at_least" in claim) == ("ESS" in label), label


def test_reverse_kl_spline_layer_uses_the_wide_bound(run):
    assert "one SplineAutoregressive layer: 5,310 parameters" in run[0]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    path = tmp_path / "figures" / name
    assert path.is_file() and path.stat().st_size > 10_000
    assert f"wrote {path}" in stdout

"""Chapter 2 in --quick mode: the leaky ReLU's log-det checks out in all four quadrants, the
learned stack approaches its target, the elementwise fit is stuck near the mutual information,
and every figure is written."""
import math
import re

import pytest

from chapter_runner import claim_lines, parse_report, run_chapter

FIGURES = ["ch02_leaky_relu_fold.png", "ch02_learned_vs_target.png", "ch02_correlated_failure.png"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch02")
    return run_chapter("ch02_leaky_relu.py", tmp_path), tmp_path


def test_round_trip_is_exact(run):
    assert float(re.search(r"max \|f\^-1\(f\(x\)\) - x\| = (\S+)", run[0]).group(1)) < 1e-12


def test_log_det_per_quadrant_is_log_alpha_per_negative_coordinate(run):
    log_alpha = math.log(0.5)
    expected = {"I   (+, +)": 0.0, "II  (-, +)": log_alpha,
                "III (-, -)": 2 * log_alpha, "IV  (+, -)": log_alpha}
    for quadrant, value in expected.items():
        match = re.search(rf"log_det in quadrant {re.escape(quadrant)}: ([+-][\d.]+)", run[0])
        assert match and abs(float(match.group(1)) - value) < 1e-6


def test_check_layer_passes_in_all_four_quadrants(run):
    errors = re.findall(r"check_layer, 4 quadrants: [^:]+: (\S+)", run[0])
    assert len(errors) == 5 and all(float(error) < 1e-6 for error in errors)


def test_check_layer_passes_with_learnable_slopes(run):
    worst = re.search(r"check_layer, learnable slopes \(0.25, 3.0\), 4 quadrants: worst error (\S+)", run[0])
    assert worst and float(worst.group(1)) < 1e-6


def test_density_jumps_by_one_over_alpha_at_the_axis(run):
    ratios = re.findall(r"density just below / just above the x1-axis at x1 = [+-]1: ([\d.]+)", run[0])
    assert len(ratios) == 2 and all(abs(float(ratio) - 2.0) < 1e-6 for ratio in ratios)


def test_pushed_forward_density_integrates_to_one(run):
    total = float(re.search(r"summed over the grid \[-5, 5\]\^2: ([\d.]+)", run[0]).group(1))
    assert abs(total - 1) < 0.01


def test_exact_entropy_agrees_with_its_monte_carlo_check(run):
    match = re.search(r"target entropy: exact ([\d.]+); Monte-Carlo check ([\d.]+) \+- ([\d.]+)", run[0])
    exact, estimate, se = map(float, match.groups())
    assert abs(exact - estimate) < 5 * se


def test_autograd_misses_the_moving_kink_only_with_a_trailing_affine(run):
    pattern = (r"autograd gradient at the truth, \[{}\]: "
               r"d loss / d (?:last )?shift = \[([^\]]+)\] \+- \[([^\]]+)\]")
    for layers, moved in (("Affine, LeakyReLU", False), ("Affine, LeakyReLU, Affine", True)):
        match = re.search(pattern.format(re.escape(layers)), run[0])
        mean, se = ([abs(float(v)) for v in group.split()] for group in match.groups())
        z_scores = [m / s for m, s in zip(mean, se)]
        assert (max(z_scores) > 8) if moved else (max(z_scores) < 5)


def test_autograd_misses_exactly_the_jump_of_the_marginal_density(run):
    # the three-layer estimate is a Monte-Carlo mean; it should sit within 5 standard errors of
    # p_i(0+) (1/alpha_i - 1), the term the text derives
    match = re.search(r"d loss / d last shift = \[([^\]]+)\] \+- \[([^\]]+)\]", run[0])
    mean, se = ([float(v) for v in group.split()] for group in match.groups())
    missing = re.search(r"the term autograd misses, p_i\(0\+\) \(1/alpha_i - 1\) = \[([^\]]+)\]", run[0])
    exact = [float(v) for v in missing.group(1).split()]
    assert all(abs(m - e) < 5 * s for m, e, s in zip(mean, exact, se))
    # and the exact term itself, from the target's parameters (s, t, alpha) = (log 1.2, 0.6, 0.25), ...
    density_above = [math.exp(-0.5 * (t / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
                     for scale, t in ((1.2, 0.6), (0.7, -0.4))]
    expected = [p * (1 / alpha - 1) for p, alpha in zip(density_above, (0.25, 0.6))]
    assert all(abs(e - x) < 1e-4 for e, x in zip(exact, expected))


def test_learned_stack_reports_nll_entropy_gap_and_kl(run):
    numbers = parse_report("leaky ReLU target", run[0])
    assert abs(numbers["gap"] - (numbers["nll"] - numbers["entropy"])) < 2e-5
    assert numbers["kl"] < 0.1          # quick mode; the full run's KL is within 0.00004 of zero


def test_elementwise_fit_cannot_beat_the_mutual_information(run):
    numbers = parse_report("correlated Gaussian, rho = 0.8", run[0])
    floor = -0.5 * math.log(1 - 0.8 ** 2)
    assert numbers["kl"] > floor - 5 * numbers["kl_se"]
    assert numbers["kl"] < floor + 0.2
    assert re.search(r"-1/2 log\(1 - rho\^2\) = 0\.51083: excess", run[0])


def test_kl_splits_into_the_mutual_information_and_the_distance_to_the_best_product(run):
    # KL(p || q) = I(x1; x2) + KL(p1 p2 || q) for any product q; both sides are estimated on
    # their own samples, so they agree within the larger standard error
    numbers = parse_report("correlated Gaussian, rho = 0.8", run[0])
    excess, excess_se = map(float, re.search(r"KL\(p1 p2 \|\| q\) = ([\d.-]+) \+- ([\d.]+)", run[0]).groups())
    floor = -0.5 * math.log(1 - 0.8 ** 2)
    assert excess > -5 * excess_se
    assert abs(numbers["kl"] - (floor + excess)) < 5 * numbers["kl_se"]


def test_gradients_at_the_truth_are_within_noise_of_the_derived_values(run):
    # both statistics are the larger of two |N(0, 1)| if the derivation is right, whatever the
    # number of points, so a --quick run keeps the bound too
    claims = [c for c in claim_lines(run[0]) if "in standard errors" in c["label"]]
    assert len(claims) == 2 and all(c["kind"] == "bound" and c["at_most"] == 3.5 for c in claims)
    assert all(c["value"] <= 3.5 for c in claims)


def test_every_claim_states_its_kind(run):
    # chapters/seeds.py reads these lines; --quick prints the full run's claim without judging it
    claims = claim_lines(run[0])
    assert [c["kind"] for c in claims] == ["bound", "bound", "bound", "bound", "exact", "bound"]
    assert all(c["quick"] for c in claims)
    identity = claims[4]
    assert identity["label"].startswith("correlated Gaussian, KL after")
    assert abs(identity["expected"] - (-0.5 * math.log(1 - 0.8 ** 2))) < 1e-6 and identity["tol"] == 0.01


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

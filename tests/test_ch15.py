"""Chapter 15 in --quick mode: the 1D fixed-point counts and the fold are exact; every flow is
scored on held-out points; the truncated series' bias shrinks with the number of terms at every c;
the roulette's mean error and the exact-vs-estimated KL are printed with their z-scores; every
claim is printed once, with the kind its text states; the figures are written."""
import re

import pytest

from chapter_runner import NUMBER, claim_lines, numbers, parse_report, run_chapter

FIGURES = ["ch15_banach.png", "ch15_estimators.png", "ch15_fits.png"]
KINDS = {"1D, c = 0.5: fixed-point steps to 1e-12": "exact",
         "1D, c = 0.9: fixed-point steps to 1e-12": "exact",
         "1D, c = 0.99: fixed-point steps to 1e-12": "exact",
         "1D, c = 1.5: preimages of y = f(0.1)": "exact",
         "ring: c = 0.5 has the largest KL of the three": "frequency",
         "ring: c = 0.97 below c = 0.9": "frequency",
         "c = 0.97: largest ||J_g|| at the points checked": "bound",
         "c = 0.97: |bias| of log q after 2 terms above 0.05 nats": "frequency",
         "c = 0.97: |bias| of log q after 20 terms": "bound",
         "the bias after 5 terms grows with c (0.5, 0.9, 0.97)": "frequency",
         "roulette: largest |z| of the mean error where its variance is finite": "bound",
         "roulette, p = 0.8: infinite variance (rho^2 >= 0.2)": "frequency",
         "roulette: the sd at 3.25 terms above the sd at 22": "frequency",
         "roulette at 22 terms: sd over Hutchinson's alone": "bound",
         **{f"{name}, {kind}: paired KL": "bound" for name in ("ring", "checkerboard", "banana")
            for kind in ("residual", "affine", "spline") if (name, kind) != ("ring", "residual")},
         "ring, residual: paired KL below 0.2": "frequency",
         "ring: residual below affine": "frequency",
         "ring: spline below residual": "frequency",
         "checkerboard: affine below residual": "frequency",
         "banana: residual below spline": "frequency",
         "ring: roulette KL against the exact KL, in standard errors": "bound",
         "trained with 2 terms: KL over 3x the exact-trained flow's": "frequency",
         "trained with 2 terms: its estimated NLL ends below the entropy": "frequency",
         "trained with the roulette: KL below the 2-term fit's": "frequency",
         "trained with the roulette: KL below the exact-trained flow's": "frequency",
         "c = 0.5: most fixed-point steps in a block": "bound",
         "sampling takes more steps as c rises": "frequency"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch15")
    return run_chapter("ch15_residual_flows.py", tmp_path), tmp_path


def test_fixed_point_counts_are_the_stated_ones_and_within_banachs_a_priori_bound(run):
    for c, expected in (("0.5", 36), ("0.9", 221), ("0.99", 1324)):
        steps, a_priori = numbers(rf"c = {re.escape(c)}: x\* to \S+ in {NUMBER} steps; the a priori bound .* allows "
                                  rf"{NUMBER}", run[0])
        assert steps == expected and steps <= a_priori


def test_the_folded_map_has_three_preimages_and_the_iteration_finds_another(run):
    match = re.search(rf"c = 1.5: f\(x\) = \S+ at x = {NUMBER}, {NUMBER}, {NUMBER}; the iteration from x_0 = y "
                      rf"ends at {NUMBER}, not at 0.1", run[0])
    assert match
    roots, end = [float(r) for r in match.groups()[:3]], float(match.group(4))
    assert abs(roots[1] - 0.1) < 1e-3 and min(abs(end - r) for r in (roots[0], roots[2])) < 1e-3


def test_every_flow_is_scored_on_held_out_points(run):
    labels = [f"ring, c = {c}" for c in ("0.5", "0.9", "0.97")] + [
        f"{name}, {kind}" for name in ("ring", "checkerboard", "banana") for kind in ("residual", "affine", "spline")]
    for label in labels:
        report = parse_report(label, run[0])
        assert report["n"] == 2000 and abs(report["gap"] - (report["nll"] - report["entropy"])) < 2e-5


def test_the_truncated_bias_shrinks_with_the_number_of_terms_at_every_c(run):
    for c in ("0.5", "0.9", "0.97"):
        line = re.search(rf"c = {re.escape(c)}: mean bias of the truncated log q, n = [\d, ]+ terms: (.*)", run[0])
        biases = [abs(float(b)) for b in line.group(1).split(", ")]
        assert len(biases) == 7 and biases[0] > biases[3] > biases[4] and biases[-1] < 1e-12


def test_the_roulette_is_graded_at_four_settings_against_hutchinsons_floor(run):
    rows = re.findall(rf"roulette, p = {NUMBER} \({NUMBER} terms on average\): mean error \S+ \(z = \S+\), "
                      rf"sd per point {NUMBER} nats; variance (?:finite|infinite)", run[0])
    assert [float(terms) for _, terms, _ in rows] == [3.25, 4.0, 7.0, 22.0]
    floor, rho = numbers(rf"Hutchinson's probe alone \(one probe per block, 50 terms\): sd per point {NUMBER} nats; "
                         rf"largest spectral radius of J at the graded points: {NUMBER}", run[0])
    assert 0 < rho <= 0.97
    assert all(float(sd) >= 0.9 * floor for _, _, sd in rows)


def test_the_ring_kl_is_given_exactly_and_by_both_estimates(run):
    for estimator in ("roulette", "truncated"):
        exact, estimate, se = numbers(rf"ring, residual: paired KL by the exact log-det {NUMBER}, by the {estimator} "
                                      rf"estimate {NUMBER} \+- {NUMBER}", run[0])
        assert se > 0


def test_fixed_point_steps_are_printed_for_every_block_and_c(run):
    for c in ("0.5", "0.9", "0.97"):
        steps = re.search(rf"c = {re.escape(c)}: fixed-point steps per block to sample \d+ points: \[([\d, ]+)\]",
                          run[0])
        assert steps and len(steps.group(1).split(", ")) == 8


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    labels = [c["label"] for c in claims]
    assert sorted(labels) == sorted(KINDS), set(labels) ^ set(KINDS)
    assert all(c["kind"] == KINDS[c["label"]] and c["quick"] for c in claims)


def test_no_timing_is_stated_as_a_claim(run):
    assert not any(re.search(r"\bms\b|time|CPU", c["label"]) for c in claim_lines(run[0]))


def test_figures_are_written(run):
    for name in FIGURES:
        assert (run[1] / "figures" / name).stat().st_size > 10_000

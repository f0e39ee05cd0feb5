"""Chapter 1 in --quick mode: it prints the number behind each claim and writes its figures."""
import re

import pytest

from chapter_runner import claim_lines, run_chapter

FIGURES = ["ch01_affine_uniform.png", "ch01_lognormal.png", "ch01_affine_fit.png"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch01")
    return run_chapter("ch01_change_of_variables.py", tmp_path), tmp_path


def number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1))


def test_affine_log_det_is_log_two(run):
    assert abs(number(r"log\|dy/dx\| = ([\d.]+) = log 2", run[0]) - 0.693147) < 1e-6


def test_stretched_uniform_has_density_one_half(run):
    assert number(r"p_Y\(y\) = ([\d.]+)", run[0]) == 0.5


def test_noise_limits_are_the_99_9th_percentiles_of_pure_noise(run):
    # P(max of B |N(0, 1)| <= c) = (2 Phi(c) - 1)^B = 0.999 at c = 4.2147 (B = 40) and 4.3053 (B = 60);
    # chi-square_B / B has its 99.9th percentile at 1.8350 (B = 40) and 1.6601 (B = 60)
    limits = re.findall(r"pure noise over (\d+) bins stays below ([\d.]+) \(largest \|z\|\) and ([\d.]+) "
                        r"\(mean z\^2\) on 99.9% of runs", run[0])
    expected = {40: (4.2147, 1.8350), 60: (4.3053, 1.6601)}
    assert len(limits) == 2
    for bins, largest, mean_square in limits:
        assert abs(float(largest) - expected[int(bins)][0]) < 1e-3
        assert abs(float(mean_square) - expected[int(bins)][1]) < 5e-3     # Wilson-Hilferty's approximation


def test_histogram_errors_stay_below_the_noise_bounds(run):
    # the bounds hold for any number of draws, so a --quick run keeps them too
    claims = [c for c in claim_lines(run[0]) if "histogram" in c["label"] or "mean squared" in c["label"]]
    assert len(claims) == 4 and all(c["kind"] == "bound" for c in claims)
    assert [c["at_most"] for c in claims] == [4.3, 1.9, 4.4, 1.7]
    assert all(c["value"] <= c["at_most"] for c in claims)


def test_lognormal_density_peaks_at_one_over_e(run):
    assert abs(number(r"the density peaks at y = ([\d.]+) on the grid", run[0]) - 0.3679) < 0.01


def test_lognormal_flow_density_matches_the_hand_formula(run):
    assert number(r"N\(log y\)/y by hand\| on \(0, 6\] = ([\d.e+-]+)", run[0]) < 1e-12


def test_lognormal_density_integrates_to_one(run):
    assert abs(number(r"formula integrated over \(0, 100\]: ([\d.]+)", run[0]) - 1) < 1e-4


def test_fitted_affine_approaches_the_closed_form(run):
    # --quick stops after 120 steps (1e-3 or so); the full run lands within 1e-13
    assert number(r"\|fitted - closed form\| over shift and scale after \d+ steps: ([\d.e+-]+)", run[0]) < 0.05


def test_final_nll_is_not_below_the_closed_form_minimum(run):
    assert number(r"final NLL - closed-form minimum after \d+ steps: ([\d.e+-]+)", run[0]) > -1e-9


def test_every_claim_states_its_kind(run):
    # chapters/seeds.py reads these lines; --quick prints the full run's claim without judging it
    kinds = [(c["label"].split(",")[0].split(" after")[0], c["kind"]) for c in claim_lines(run[0])]
    assert kinds == [("uniform", "bound"), ("uniform", "bound"), ("log-normal", "bound"), ("log-normal", "bound"),
                     ("largest |fitted - closed form| over shift and scale", "exact"),
                     ("final NLL - closed-form minimum", "exact")]
    assert all(c["quick"] for c in claim_lines(run[0]))
    exact = [c for c in claim_lines(run[0]) if c["kind"] == "exact"]
    assert [(c["expected"], c["tol"]) for c in exact] == [(0, 1e-13), (0, 1e-15)]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

"""Chapter 1 in --quick mode: it prints the number behind each claim and writes its figures."""
import re

import pytest

from chapter_runner import run_chapter

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


def test_histograms_agree_with_formulas_within_monte_carlo_error(run):
    # max over 40 and 60 bins of |z|: pure noise exceeds 5 standard errors with probability < 1e-4
    scores = re.findall(r"largest \|histogram - formula\| in standard errors: ([\d.]+)", run[0])
    assert len(scores) == 2
    assert all(float(score) < 5 for score in scores)


def test_histogram_errors_are_the_size_of_sampling_noise(run):
    # the mean of 40 (60) squared z-scores has expectation 1 and standard deviation about 0.2
    means = re.findall(r"mean squared error in squared standard errors: ([\d.]+)", run[0])
    assert len(means) == 2
    assert all(0.3 < float(mean) < 2.0 for mean in means)


def test_lognormal_density_peaks_at_one_over_e(run):
    assert abs(number(r"the density peaks at y = ([\d.]+) on the grid", run[0]) - 0.3679) < 0.01


def test_lognormal_flow_density_matches_the_hand_formula(run):
    assert number(r"N\(log y\)/y by hand\| on \(0, 6\] = ([\d.e+-]+)", run[0]) < 1e-12


def test_lognormal_density_integrates_to_one(run):
    assert abs(number(r"formula integrated over \(0, 100\]: ([\d.]+)", run[0]) - 1) < 1e-4


def test_fitted_affine_approaches_the_closed_form(run):
    # --quick stops after 120 steps (1e-3 or so); the full run lands within 4e-14
    assert number(r"\|shift - sample mean\| after \d+ steps: ([\d.e+-]+)", run[0]) < 0.05
    assert number(r"\|scale - sample std\| after \d+ steps: ([\d.e+-]+)", run[0]) < 0.05


def test_final_nll_is_not_below_the_closed_form_minimum(run):
    assert number(r"final NLL - closed-form minimum after \d+ steps: ([\d.e+-]+)", run[0]) > -1e-9


def test_every_seed_dependent_claim_prints_the_range_the_text_states(run):
    # chapters/seeds.py reads these lines; --quick prints the full run's range without judging it
    assert len(re.findall(r"\(text, full run: \S+ to \S+ over seeds 0-4; a --quick run is not compared\)",
                          run[0])) == 7


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

"""Chapter 7 in --quick mode: the correct layer passes check_layer, both broken layers are caught
(but only with moved parameters and points of both signs), every trained result is printed beside
the claim the text makes, of its kind, and every figure is written. A --quick run trains for 30
steps, so no test compares its numbers with the full run's claims."""
import re

import pytest

from chapter_runner import claim_lines, run_chapter

CLAIMS = {"held-out paired KL": "bound",
          "training unfolds coordinate 1 (alpha_1 above 0.8) and kinks coordinate 2 (alpha_2 below 0.5)": "frequency",
          "leaky-ReLU slope alpha_2": "range", "largest |grid integral - 1| of q_0 ... q_4": "bound",
          "mean total log-det over base samples": "range"}
FIGURES = ["ch07_residual_tanh.png", "ch07_warped_grid.png", "ch07_quadrants.png",
           "ch07_density_after_k.png", "ch07_log_det.png"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch07")
    return run_chapter("ch07_your_own_layer.py", tmp_path), tmp_path


def test_correct_layer_passes_with_tiny_errors(run):
    stdout, _ = run
    match = re.search(r"correct ResidualTanh: passes check_layer, worst error (\S+) <= 1e-06", stdout)
    assert match and float(match.group(1)) < 1e-8


def test_wrong_sign_log_det_is_caught_only_away_from_init(run):
    stdout, _ = run
    assert re.search(r"wrong-sign log-det, init params: passes", stdout)
    match = re.search(r"wrong-sign log-det, moved params: CAUGHT -- WrongSignLogDet fails check_layer:\n"
                      r"  log_det vs autograd Jacobian: (\S+) > 1e-06", stdout)
    assert match and float(match.group(1)) > 1e-3


def test_forgotten_sign_is_caught_only_on_negative_points(run):
    stdout, _ = run
    assert re.search(r"forgot the sign, positive points only: passes", stdout)
    match = re.search(r"forgot the sign, points of both signs: CAUGHT -- ForgotTheSign fails check_layer:\n"
                      r"  round trip x -> y -> x: (\S+) > 1e-06", stdout)
    assert match and float(match.group(1)) > 1e-3


def test_held_out_report_and_layer_claims_are_printed(run):
    stdout, _ = run
    assert re.search(r"held-out: NLL [-\d.]+, entropy 4\.22417, gap [-\d.]+, KL = .* \+- [\d.]+", stdout)
    assert re.search(r"the first coupling keeps coordinate 1: max \|change\| = 0\.0e\+00", stdout)
    assert re.search(r"points whose quadrant the leaky ReLU keeps: 100\.0%", stdout)


def test_every_trained_result_is_printed_beside_the_texts_claim(run):
    stdout, _ = run
    claims = claim_lines(stdout)
    assert {c["label"]: c["kind"] for c in claims} == CLAIMS
    assert all(c["quick"] for c in claims)


def test_density_after_k_layers_integrates_to_about_one(run):
    stdout, _ = run
    masses = [float(m) for m in re.findall(r"q_\d: integral over a grid around its samples = (\S+)", stdout)]
    assert len(masses) == 5 and all(abs(m - 1) < 0.05 for m in masses)


def test_every_figure_is_written(run):
    _, tmp_path = run
    for name in FIGURES:
        assert (tmp_path / "figures" / name).stat().st_size > 10_000, name

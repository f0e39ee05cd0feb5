"""Chapter 5 in --quick mode: the entropy derivation checks out, the untrained flow is the
identity, training lowers the held-out KL, the reports are consistent, every claim states its kind,
and every figure is written."""
import re

import pytest

from chapter_runner import claim_lines, run_chapter

FIGURES = ["ch05_target.png", "ch05_loss.png", "ch05_training.png", "ch05_density.png",
           "ch05_marginals.png"]
NUMBER = r"(-?[\d.]+(?:e[-+]\d+)?)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch05")
    return run_chapter("ch05_coupling_lu.py", tmp_path), tmp_path


def test_entropy_formula_matches_library_and_quadrature(run):
    stdout, _ = run
    match = re.search(rf"E\[log a\]: trapezoid {NUMBER}, formula 2 log 2 - 1 = {NUMBER}", stdout)
    assert match and abs(float(match.group(1)) - float(match.group(2))) < 1e-6
    assert re.search(r"entropy: formula 1\.61209, library 1\.61209, Monte Carlo", stdout)


def test_monte_carlo_entropy_agrees_within_four_standard_errors(run):
    stdout, _ = run
    match = re.search(rf"Monte Carlo -mean log p = {NUMBER} \+- {NUMBER}", stdout)
    assert match and abs(float(match.group(1)) - 1.61209) < 4 * float(match.group(2))


def test_marginal_of_b_by_trapezoid_integrates_to_about_one(run):
    stdout, _ = run
    match = re.search(rf"integral of p\(b\) over b in .*?: {NUMBER}", stdout)
    assert match and abs(float(match.group(1)) - 1) < 1e-3


def test_untrained_flow_is_the_identity(run):
    stdout, _ = run
    match = re.search(rf"untrained flow: max \|f\(z\) - z\| = {NUMBER}, max \|log det\| = {NUMBER}", stdout)
    assert match and float(match.group(1)) < 1e-12 and float(match.group(2)) < 1e-12


def test_lu_log_det_matches_slogdet(run):
    stdout, _ = run
    match = re.search(rf"log\|det W\|: trace\(LU\) = {NUMBER}, numpy slogdet = {NUMBER}", stdout)
    assert match and abs(float(match.group(1)) - float(match.group(2))) < 1e-5
    match = re.search(rf"round trip: max \|x - f\^-1\(f\(x\)\)\| = {NUMBER}", stdout)
    assert match and float(match.group(1)) < 1e-12


def test_skipped_and_clipped_steps_are_reported(run):
    stdout, _ = run
    assert re.search(r"trained \d+ steps in .* s \(\d+ ms/step\); skipped \d+ steps with a non-finite loss "
                     r"or gradient; clipped \d+ gradients longer than 10", stdout)


def test_the_step_size_warms_up_and_decays(run):
    stdout, _ = run
    match = re.search(rf"step size: {NUMBER} at step 1, peak {NUMBER}, {NUMBER} at the last step", stdout)
    first, peak, last = map(float, match.groups())
    assert first < peak and last < 0.1 * peak


def test_reports_print_nll_beside_entropy_and_gap_is_their_difference(run):
    stdout, _ = run
    reports = re.findall(rf"after \d+ steps: NLL {NUMBER}, entropy {NUMBER}, gap {NUMBER}, "
                         rf"KL = mean\(log p - log q\) = {NUMBER} \+- {NUMBER}", stdout)
    assert len(reports) == 1
    for nll, entropy, gap, kl, se in (map(float, r) for r in reports):
        assert entropy == 1.61209 and abs(nll - entropy - gap) < 2e-5 and se > 0


def test_training_lowers_the_held_out_kl(run):
    stdout, _ = run
    kl = [float(k) for k in re.findall(rf"checkpoint step +\d+: paired KL on \d+ held-out points {NUMBER}", stdout)]
    assert len(kl) >= 3 and kl[-1] < kl[0]


def test_leaked_mass_and_sampled_fraction_are_printed(run):
    stdout, _ = run
    assert re.search(rf"mass outside a in \[1, 2\]: {NUMBER} \(text, full run: ", stdout)
    assert re.search(rf"flow samples with a outside \[1, 2\]: {NUMBER} \(\+- {NUMBER}\)", stdout)


def test_edge_and_interior_errors_are_printed(run):
    stdout, _ = run
    match = re.search(rf"max \|q - p\|: {NUMBER} over the window, {NUMBER} for 1.1 < a < 1.9", stdout)
    assert match and float(match.group(1)) >= float(match.group(2))


def test_every_claim_states_its_kind(run):
    stdout, _ = run
    claims = claim_lines(stdout)
    assert [(c["label"], c["kind"]) for c in claims] == [
        ("paired KL after 20 steps", "bound"),
        ("the largest |q - p| sits at the edges, at least 3 times the largest for 1.1 < a < 1.9", "frequency"),
        ("mass outside a in [1, 2]", "bound"),
        ("leak bound -log(1 - m) / paired KL", "range")]
    assert all(c["quick"] for c in claims)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    _, tmp_path = run
    path = tmp_path / "figures" / name
    assert path.is_file() and path.stat().st_size > 10_000

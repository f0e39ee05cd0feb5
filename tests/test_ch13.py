"""Chapter 13 in --quick mode: the untrained flow is the identity; maximum likelihood through the
solver is scored with the evaluation solver, the training curve with both solvers; the solver's
error falls at RK4's order; q integrates to one on the grid and box_check finds samples and density
in agreement; K residual layers approach the ODE at first order; Hutchinson's estimate is
unbiased; every claim is printed once, with the kind its text states; the figures are written."""
import re

import pytest

from chapter_runner import NUMBER, box_check_line, claim_lines, numbers, parse_report, run_chapter

FIGURES = ["ch13_training.png", "ch13_residual.png", "ch13_field.png", "ch13_samples.png"]
KINDS = {"banana: paired KL after 5 maximum-likelihood steps": "bound",
         "solver: mean log q error at 16 RK4 steps (500 points, against 64 steps)": "bound",
         "banana: |1 - integral of q over the grid|": "bound",
         "banana: box check of flow samples against q, z": "bound",
         "residual layers: log q error at K = 8 over K = 16": "exact",
         "residual layers: K = 4 is not invertible everywhere (the fixed point fails somewhere)": "frequency",
         "Hutchinson, Rademacher probes: largest |z| of the mean estimate over 20 points": "bound",
         "Hutchinson, Gaussian probes: largest |z| of the mean estimate over 20 points": "bound",
         "Hutchinson: Rademacher probes less noisy than Gaussian ones (median sd)": "frequency"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch13")
    return run_chapter("ch13_neural_ode.py", tmp_path), tmp_path


def test_untrained_flow_is_the_identity(run):
    assert "untrained flow: max |x(1) - x(0)| = 0.0e+00, max |log det| = 0.0e+00" in run[0]


def test_the_model_is_scored_on_held_out_points(run):
    report = parse_report("banana, maximum likelihood, scored with 8 RK4 steps", run[0])
    assert report["n"] == 1000
    assert report["kl"] > -5 * report["kl_se"]          # a KL is never negative beyond its noise
    assert abs(report["gap"] - (report["nll"] - report["entropy"])) < 2e-5


def test_training_curve_is_scored_with_both_solvers_and_falls(run):
    pairs = re.findall(rf"step (\d+) {NUMBER} / {NUMBER}", run[0])
    assert [int(step) for step, _, _ in pairs][:2] == [0, 1] and len(pairs) >= 4
    assert float(pairs[-1][2]) < float(pairs[0][2])


def test_the_solver_error_falls_at_rk4s_order(run):
    ratio, order = numbers(rf"halving the step from 8 to 16 divides the mean log q error by {NUMBER}: order {NUMBER}", run[0])
    assert 8 <= ratio <= 32 and 3 <= order <= 5
    errors = [float(e) for e in re.findall(rf"\d+ RK4 steps: max \|z - inverse\(forward\(z\)\)\| = {NUMBER}", run[0])]
    assert len(errors) == 5 and all(a > b for a, b in zip(errors, errors[1:]))


def test_true_density_integrates_to_one_on_the_grid(run):
    banana, = numbers(rf"of the true density on the same grid: {NUMBER}", run[0])
    assert abs(banana - 0.99989) < 2e-4                 # the grid leaves out the banana's far tails


def test_flow_density_integrates_to_one_on_the_grid(run):
    mass, = numbers(rf"integral of q over \[-20, 60\] x \[-16, 16\], \d+ cells of 1.0 x 1.0: {NUMBER}", run[0])
    assert abs(mass - 1) < 0.05                         # quick mode: cells of 1 across a banana of width 1


def test_box_check_finds_samples_and_density_in_agreement(run):
    share, mass, chi2, dof, ratio, z = box_check_line(
        rf"box check, 6 x 6 boxes over \(-6.0, 40.0\) x \(-14.0, 14.0\), 2000 samples: ", run[0])
    assert abs(share - mass) < 0.02 and dof >= 5 and ratio == pytest.approx(chi2 / dof, abs=0.01)
    assert z < 4


def test_residual_layers_approach_the_ode_at_first_order(run):
    errors = [float(e) for e in re.findall(rf"K = +\d+ layers: mean \|log q_K - log q_ODE\| = {NUMBER}", run[0])]
    assert len(errors) == 3 and errors[0] > errors[1] > errors[2]
    ratio, = numbers(rf"doubling K from 8 to 16 divides the mean log q error by {NUMBER}", run[0])
    assert 1.5 < ratio < 2.7


@pytest.mark.parametrize("name", ["Rademacher", "Gaussian  "])
def test_hutchinson_estimate_is_unbiased(name, run):
    sd, largest_z = numbers(rf"{name} probes: sd of the estimate of log q per point, median {NUMBER} nats .*"
                            rf"largest \|z\| = {NUMBER} over 20 points", run[0])
    assert sd > 0 and largest_z < 4.5                   # 20 points: the largest of 20 |z| is rarely above 3


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert {c["label"]: c["kind"] for c in claims} == KINDS and len(claims) == len(KINDS)
    assert all(c["quick"] and not c["flagged"] for c in claims)

"""Chapter 13 in --quick mode: the untrained flow is the identity; flow matching, maximum likelihood
from the start and the fine-tune are each scored with the evaluation solver; the averaged targets
cut the loss; the solver's error falls at RK4's order; q integrates to one on both grids and box
masses from samples match its integral; K residual layers approach the ODE at first order;
Hutchinson's estimate is unbiased; the edge of chapter 5's target and the cost table are printed;
every training result is printed once beside its range; the figures are written."""
import re

import pytest

from chapter_runner import CLAIM, NUMBER, numbers, parse_report, run_chapter

FIGURES = ["ch13_training.png", "ch13_residual.png", "ch13_field.png", "ch13_samples.png", "ch13_edge.png"]
NUM_CLAIMS = 4 + 2 + 1 + 2 + 7 + 1 + 3   # banana KLs and spread, grid and box, residual, Hutchinson, box target, ch3, costs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch13")
    return run_chapter("ch13_continuous.py", tmp_path), tmp_path


def test_untrained_flow_is_the_identity(run):
    assert "untrained flow: max |x(1) - x(0)| = 0.0e+00, max |log det| = 0.0e+00" in run[0]


@pytest.mark.parametrize("label", ["banana, flow matching, 8 RK4 steps", "banana, maximum likelihood only, 8 RK4 steps",
                                   "banana, fine-tuned, scored with 8 RK4 steps",
                                   "chapter 5's target, flow matching",
                                   "chapter 5's target, fine-tuned, scored with 8 RK4 steps"])
def test_every_model_is_scored_on_held_out_points(label, run):
    report = parse_report(label, run[0])
    assert report["n"] in (500, 1000)
    assert report["kl"] > -5 * report["kl_se"]          # a KL is never negative beyond its noise
    assert abs(report["gap"] - (report["nll"] - report["entropy"])) < 2e-5


def test_averaged_targets_have_a_lower_loss_than_plain_ones(run):
    plain, = numbers(rf"plain    targets: batch loss +{NUMBER}", run[0])
    averaged, = numbers(rf"averaged targets: batch loss +{NUMBER}", run[0])
    assert averaged < plain


def test_the_solver_error_falls_at_rk4s_order(run):
    ratio, = numbers(rf"halving the step from 16 to 32 divides the log q error by {NUMBER} \(RK4", run[0])
    assert 8 <= ratio <= 32
    errors = [float(e) for e in re.findall(rf"\d+ RK4 steps: max \|z - inverse\(forward\(z\)\)\| = {NUMBER}", run[0])]
    assert len(errors) == 5 and all(a > b for a, b in zip(errors, errors[1:]))


def test_coarse_and_fine_solvers_score_the_same_points(run):
    for target, steps in (("banana", 8), ("chapter 5's target", 4)):
        coarse, fine, gap, se = numbers(rf"{target}, fine-tuned, on \d+ points: KL {NUMBER} scored with its {steps} "
                                        rf"training steps, {NUMBER} with 8 \(gap {NUMBER} \+- {NUMBER}\)", run[0])
        assert abs((fine - coarse) - gap) < 2e-4 and se >= 0


def test_true_density_integrates_to_one_on_both_grids(run):
    banana, = numbers(rf"of the true density on the same grid: {NUMBER}", run[0])
    assert abs(banana - 0.99983) < 2e-4                 # the grid leaves out the banana's far tails
    box, = numbers(rf"flow matching \+ maximum likelihood: integral of q over the grid {NUMBER} \(true density: {NUMBER}\)",
                   run[0])[1:]
    assert abs(box - 1) < 1e-6                          # cells end at a = 1 and 2: exact in a


def test_flow_density_integrates_to_one_on_the_grid(run):
    banana_mass, = numbers(rf"integral of q over \[-6, 56\] x \[-15, 15\], \d+ cells of 1.0 x 1.0: {NUMBER}", run[0])
    assert abs(banana_mass - 1) < 0.05                  # quick mode: cells of 1 across a banana of width 1
    box_mass, = numbers(rf"flow matching \+ maximum likelihood: integral of q over the grid {NUMBER}", run[0])
    assert abs(box_mass - 1) < 5e-3


@pytest.mark.parametrize("pattern", [r"box \(\(2.0, 10.0\), \(-5.0, -1.0\)\)", r"box a in \(1.9, 2.1\)"])
def test_box_mass_from_samples_matches_the_integral_of_q(pattern, run):
    fraction, se, integral, z = numbers(rf"{pattern}: {NUMBER} \+- {NUMBER} of \d+ samples, integral of q {NUMBER} "
                                        rf"\(differ by {NUMBER} standard errors\)", run[0])
    assert abs(fraction - integral) / se == pytest.approx(z, abs=0.06)
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


def test_leaked_mass_is_printed_for_both_models(run):
    for name in ("flow matching", "flow matching \\+ maximum likelihood"):
        leak, bound = numbers(rf"{name}: integral of q over the grid [\d.]+ \(true density: [\d.]+\); mass outside "
                              rf"\[1, 2\]: {NUMBER}, so at least {NUMBER} nats", run[0])
        assert 0 < leak < 1 and bound >= leak


def test_learned_and_ideal_edge_fields_are_printed(run):
    assert len(re.findall(r"t = [\d.]+: edge of the cloud at a = [\d.]+, blurred by [\d.]+; steepest fall of the "
                          r"a-velocity across it: learned by flow matching [\d.-]+, ideal [\d.-]+ per unit", run[0])) == 3


def test_cost_table_has_every_model(run):
    for name in ["chapter 3 coupling", "chapter 5 coupling \\+ LU", "continuous, flow matching",
                 "continuous, max. likelihood \\(8 RK4\\)", "drawing an averaged flow-matching batch"]:
        assert re.search(rf"^ +{name} +{NUMBER}$", run[0], re.MULTILINE), name
    for name in ["chapter 3 coupling", "chapter 5 coupling \\+ LU", "continuous \\(8 RK4 steps\\)"]:
        assert re.search(rf"^ +{name} +{NUMBER} +{NUMBER}$", run[0], re.MULTILINE), name


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_every_training_result_is_printed_once_beside_its_range(run):
    labels = CLAIM.findall(run[0])
    assert len(labels) == NUM_CLAIMS and len(set(labels)) == NUM_CLAIMS

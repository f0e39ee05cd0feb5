"""Chapter 14 in --quick mode: flow matching and the fine-tune on the banana and on chapter 5's
target are each scored on held-out points with the evaluation solver; the averaged targets cut the
batch loss; the fine-tuned model is scored with its training solver and the evaluation solver on
the same points; q integrates to one on the grid and box_check finds samples and density in agreement;
the leaked mass is printed for both models; the learned and ideal fields across the edge are
printed; every claim is printed once, with the kind its text states; the figures are written."""
import re

import pytest

from chapter_runner import NUMBER, box_check_line, claim_lines, numbers, parse_report, run_chapter

FIGURES = ["ch14_training.png", "ch14_paths.png", "ch14_edge.png"]
KINDS = {"banana: paired KL after 30 flow-matching steps": "bound",
         "banana: averaged targets give a smaller gradient spread than plain ones": "frequency",
         "banana: paired KL, flow matching + 3 maximum-likelihood steps": "bound",
         "banana: the fine-tune lowers flow matching's KL": "frequency",
         "chapter 5's target: paired KL after 30 flow-matching steps": "bound",
         "chapter 5's target: paired KL, flow matching + 3 maximum-likelihood steps": "bound",
         "chapter 5's target: mass outside [1, 2] after fine-tuning": "bound",
         "chapter 5's target: -log(1 - leaked mass) / KL": "range",
         "chapter 5's target: box check of flow samples against q, z": "bound",
         "banana: paired KL of chapter 3's coupling flow after 20 steps at most 0.015": "frequency",
         "banana: chapter 3's coupling flow beats the continuous flow's flow matching + fine-tune": "frequency"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch14")
    return run_chapter("ch14_flow_matching.py", tmp_path), tmp_path


@pytest.mark.parametrize("label", ["banana, flow matching, 8 RK4 steps", "banana, fine-tuned, scored with 8 RK4 steps",
                                   "chapter 5's target, flow matching",
                                   "chapter 5's target, fine-tuned, scored with 8 RK4 steps",
                                   "banana, chapter 3's coupling flow, 20 steps"])
def test_every_model_is_scored_on_held_out_points(label, run):
    report = parse_report(label, run[0])
    assert report["n"] == 1000
    assert report["kl"] > -5 * report["kl_se"]          # a KL is never negative beyond its noise
    assert abs(report["gap"] - (report["nll"] - report["entropy"])) < 2e-5


def test_averaged_targets_have_a_lower_loss_than_plain_ones(run):
    plain, = numbers(rf"plain    targets: batch loss +{NUMBER}", run[0])
    averaged, = numbers(rf"averaged targets: batch loss +{NUMBER}", run[0])
    assert averaged < plain


def test_coarse_and_fine_solvers_score_the_same_points(run):
    coarse, fine = numbers(rf"chapter 5's target, fine-tuned, on 200 points: KL {NUMBER} scored with its 4 "
                           rf"training steps, {NUMBER} with 8", run[0])
    assert abs(fine - coarse) < 0.05


def test_true_density_integrates_to_one_on_the_grid(run):
    q_mass, p_mass = numbers(rf"flow matching \+ maximum likelihood: integral of q over the grid {NUMBER} "
                             rf"\(true density: {NUMBER}\)", run[0])
    assert abs(p_mass - 1) < 1e-6                       # cells end at a = 1 and 2: exact in a
    assert abs(q_mass - 1) < 5e-3


def test_box_check_finds_samples_and_density_in_agreement(run):
    share, mass, chi2, dof, ratio, z = box_check_line(
        rf"box check, 9 x 9 boxes over a in \(0.6, 2.4\), b in \(-4.5, 9.5\), 2000 samples: ", run[0])
    assert abs(share - mass) < 0.03 and dof >= 5 and ratio == pytest.approx(chi2 / dof, abs=0.01)
    assert z < 4


def test_leaked_mass_is_printed_for_both_models(run):
    for name in ("flow matching", "flow matching \\+ maximum likelihood"):
        leak, bound = numbers(rf"{name}: integral of q over the grid [\d.]+ \(true density: [\d.]+\); mass outside "
                              rf"\[1, 2\]: {NUMBER}, so at least {NUMBER} nats", run[0])
        assert 0 < leak < 1 and bound >= leak


def test_learned_and_ideal_edge_fields_are_printed(run):
    ideal = [float(s) for s in re.findall(r"t = [\d.]+: edge of the cloud at a = [\d.]+, blurred by [\d.]+; steepest fall "
                                          r"of the a-velocity across it: learned by flow matching [\d.-]+, ideal ([\d.-]+) "
                                          r"per unit", run[0])]
    assert len(ideal) == 3 and ideal[0] < ideal[1] < ideal[2]      # the ideal field steepens like 1 / (1 - t)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert {c["label"]: c["kind"] for c in claims} == KINDS and len(claims) == len(KINDS)
    assert all(c["quick"] and not c["flagged"] for c in claims)

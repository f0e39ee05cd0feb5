"""Chapter 4 in --quick mode: MADE's Jacobian is exactly zero where it must be, the inverse
becomes exact one coordinate per pass, IAF and MAF swap their pass counts and undo each other,
the first gradient is far longer than the clipping norm, the sigmoid-gated layer never beats its
computed floor, every claim states its kind, and every figure is written."""
import math
import re

import pytest

from chapter_runner import claim_lines, parse_report, run_chapter

FIGURES = ["ch04_made_masks.png", "this_machine/ch04_iaf_vs_maf_cost.png", "ch04_first_flow.png",
           "ch04_scale_parameterisation.png"]
FLOAT = r"([-+\d.e]+)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch04")
    return run_chapter("ch04_autoregressive.py", tmp_path), tmp_path


def test_made_paths_are_strictly_lower_triangular(run):
    rows = re.search(r"paths from input j \(row\) to output i \(column\):\n((?:.*\]\n){4})", run[0]).group(1)
    paths = [[int(v) for v in row.strip(" []").split()] for row in rows.strip().splitlines()]
    for j, row in enumerate(paths):
        for i, count in enumerate(row):
            assert (count > 0) == (j < i), (j, i, count)


@pytest.mark.parametrize("name", ["mu", "s_raw"])
def test_made_output_i_does_not_depend_on_inputs_j_at_or_after_i(run, name):
    forbidden = float(re.search(rf"max \|d {name}_i / d x_j\| over j >= i: {FLOAT}", run[0]).group(1))
    allowed = float(re.search(rf"min over j < i of max over points \|d {name}_i / d x_j\|: {FLOAT}",
                              run[0]).group(1))
    assert forbidden == 0.0
    assert allowed > 0.0


def test_layer_jacobian_is_lower_triangular_with_diagonal_exp_s(run):
    upper = float(re.search(rf"max \|dy_i / dz_j\| over j > i: {FLOAT}", run[0]).group(1))
    diagonal = float(re.search(rf"max \|diag\(dy/dz\) - exp\(s\)\|: {FLOAT}", run[0]).group(1))
    assert upper == 0.0 and diagonal < 1e-12


def test_check_layer_passes_for_affine_autoregressive(run):
    errors = re.findall(rf"check_layer, AffineAutoregressive D = 4: [^:]+: {FLOAT}", run[0])
    assert len(errors) == 5 and all(float(error) < 1e-6 for error in errors)


def test_inverse_fixes_one_more_coordinate_per_pass(run):
    for k in range(1, 5):
        line = re.search(rf"after pass {k}: max \|z_i - z\| per coordinate i = 1..4: (.*)", run[0]).group(1)
        errors = [float(v) for v in line.split()]
        assert all(error < 1e-12 for error in errors[:k]), (k, errors)
        assert all(error > 1e-8 for error in errors[k:]), (k, errors)   # not yet: D passes are needed


@pytest.mark.parametrize("dim", [2, 8])
def test_fast_directions_take_one_pass_and_slow_ones_take_d(run, dim):
    row = re.search(rf"^\s*{dim} \| (.*)$", run[0], re.MULTILINE).group(1)
    passes = [int(p) for p in re.findall(r"\[\s*(\d+)\]", row)]
    assert passes == [1, dim, dim, 1]          # IAF sample, IAF log_prob, MAF sample, MAF log_prob


@pytest.mark.parametrize("dim", [2, 8])
def test_iaf_and_maf_with_the_same_params_are_inverses(run, dim):
    match = re.search(rf"D = {dim}: max \|MAF\(IAF\(z\)\) - z\| = {FLOAT}, max \|IAF\(MAF\(z\)\) - z\| = {FLOAT}, "
                      rf"max \|log_det IAF \+ log_det MAF\| = {FLOAT}", run[0])
    assert all(float(v) < 1e-10 for v in match.groups())


def test_first_flow_reports_nll_entropy_gap_and_kl(run):
    numbers = parse_report("first flow", run[0])
    assert abs(numbers["entropy"] - (1 + math.log(2 * math.pi) - 2 * math.log(2))) < 1e-5
    assert abs(numbers["gap"] - (numbers["nll"] - numbers["entropy"])) < 2e-5
    assert numbers["kl"] > -5 * numbers["kl_se"]
    assert re.search(r"learned mu: mean \[.*\] \(target 5\); learned scale exp\(s\): mean \[.*\] \(target 0.5\)", run[0])


def test_first_gradient_is_far_longer_than_the_clipping_norm(run):
    # the data start 5 base standard deviations away, which is why the chapter clips (CLIP_NORM = 1)
    norm = float(re.search(rf"gradient norm at the first step: {FLOAT}", run[0]).group(1))
    assert norm > 50


def test_only_the_clipped_runs_clip(run):
    clipped = [int(n) for n in re.findall(r"trained \d+ steps in [\d.]+ s, (\d+) of them clipped", run[0])]
    first_flow, unclipped, gated = clipped
    assert first_flow > 0 and gated > 0 and unclipped == 0


def test_clipping_makes_faster_progress_from_the_same_start(run):
    clipped, unclipped = parse_report("first flow", run[0]), parse_report("first flow, unclipped", run[0])
    assert clipped["kl"] + 5 * clipped["kl_se"] < unclipped["kl"] - 5 * unclipped["kl_se"]


def test_sigmoid_gated_scale_never_beats_its_floor(run):
    floor = float(re.search(rf"best KL any sigmoid-gated layer can reach .*: {FLOAT}", run[0]).group(1))
    sigma = 1 / 1.001
    assert abs(floor - 2 * (math.log(sigma / 0.5) + 0.25 / (2 * sigma ** 2) - 0.5)) < 1e-5
    numbers = parse_report("sigmoid-gated scale", run[0])
    assert numbers["kl"] > floor - 5 * numbers["kl_se"]


def test_hard_clamp_cuts_the_gradient_and_the_soft_bound_does_not(run):
    def slopes(name):
        line = re.search(rf"ds/ds_raw of the {re.escape(name)} at s_raw = 0, 2, 3.5, 6: \[(.*)\]", run[0]).group(1)
        return [float(v) for v in line.split()]
    assert all(slope > 0.1 for slope in slopes("soft bound 5 tanh(s_raw / 5)"))
    assert slopes("hard clamp clip(s_raw, -5, 3)") == [1.0, 1.0, 0.0, 0.0]


def test_every_claim_states_its_kind(run):
    # chapters/seeds.py reads these lines; --quick prints the full run's claim without judging it
    claims = {c["label"]: c for c in claim_lines(run[0])}
    assert [c["kind"] for c in claims.values()] == ["bound", "bound", "bound", "frequency", "bound"]
    assert all(c["quick"] for c in claims.values())
    assert claims["gradient norm at the first step"]["at_least"] == 150
    assert claims["sigmoid-gated: paired KL after 100 steps"]["at_least"] == 0.63      # the floor, rounded down
    unclipped = next(c for c in claims.values() if c["kind"] == "frequency")
    assert unclipped["label"].startswith("without clipping the run ends far worse")


def test_no_timing_is_stated_as_a_claim(run):
    assert not [c for c in claim_lines(run[0]) if "time" in c["label"] or "ms" in c["label"].split()]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

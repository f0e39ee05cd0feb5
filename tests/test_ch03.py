"""Chapter 3 in --quick mode: the coupling layer passes its checks, the flow round-trips, every
report and the cure table are printed with consistent numbers, every claim is printed with its
kind, and every figure (and the GIF) is written. A --quick run trains too little for the full
run's claims, so nothing here compares a trained result with them."""
import re

import pytest

from chapter_runner import claim_lines, run_chapter

FIGURES = ["ch03_target.png", "ch03_layers.png", "ch03_layers.gif", "ch03_samples.png",
           "ch03_density.png", "ch03_overfit_damage.png", "ch03_loss_curves.png"]
REPORT = (r"{}: NLL ([\d.-]+), entropy ([\d.-]+), gap ([\d.-]+), "
          r"KL = mean\(log p - log q\) = ([\d.-]+) \+- ([\d.]+) \(n = (\d+)\)")
CURES = ["none (section 8)", "early stopping", "weight decay", "smaller model", "all three"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch03")
    return run_chapter("ch03_realnvp_banana.py", tmp_path), tmp_path


def report(label, text):
    match = re.search(REPORT.format(label), text)
    assert match, f"no report line for {label!r} in:\n{text}"
    nll, entropy, gap, kl, kl_se, n = match.groups()
    return {"nll": float(nll), "entropy": float(entropy), "gap": float(gap), "kl": float(kl),
            "kl_se": float(kl_se), "n": int(n)}


def test_exact_entropy_agrees_with_its_monte_carlo_check(run):
    match = re.search(r"entropy H\(p\) = ([\d.]+); Monte-Carlo check -mean log p = ([\d.]+) \+- ([\d.]+)", run[0])
    exact, estimate, se = map(float, match.groups())
    assert abs(exact - 4.22417) < 1e-5 and abs(exact - estimate) < 5 * se


def test_coupling_with_moved_parameters_passes_check_layer(run):
    errors = re.findall(r"check_layer, coupling with moved parameters: [^:]+: (\S+)", run[0])
    assert len(errors) == 5 and all(float(error) < 1e-6 for error in errors)


def test_coupling_jacobian_is_triangular(run):
    match = re.search(r"max \|dy2/dx1\| over 50 points = (\S+)", run[0])
    assert match and float(match.group(1)) == 0.0


def test_flow_round_trip_is_exact(run):
    match = re.search(r"flow round trip on 50 points: max \|f\(f\^-1\(x\)\) - x\| = (\S+)", run[0])
    assert match and float(match.group(1)) < 1e-10


def test_standardising_affine_starts_at_the_data_statistics(run):
    match = re.search(r"log_scale = \[\s*([\d.]+)\s+([\d.]+)\], shift = \[\s*([\d.-]+)\s+([\d.-]+)\]", run[0])
    log_scale_1, log_scale_2, shift_1, shift_2 = map(float, match.groups())
    # exact std (sqrt 33, 4) and mean (4, 0); 1024 points give a few per cent of slack
    assert abs(log_scale_1 - 0.5 * 3.4965) < 0.15 and abs(log_scale_2 - 1.3863) < 0.1
    assert abs(shift_1 - 4) < 0.8 and abs(shift_2) < 0.8


def test_standardising_beats_not_standardising_at_equal_steps(run):
    with_std = report(r"standardised = True, \d+ steps", run[0])
    without = report(r"standardised = False, \d+ steps", run[0])
    assert with_std["kl"] < without["kl"]


@pytest.mark.parametrize("label", [r"standardised = True, \d+ steps", r"standardised = False, \d+ steps",
                                   r"fresh samples, \d+ steps, cosine schedule"])
def test_report_gap_is_nll_minus_entropy(run, label):
    numbers = report(label, run[0])
    assert abs(numbers["entropy"] - 4.22417) < 1e-5
    assert abs(numbers["gap"] - (numbers["nll"] - numbers["entropy"])) < 2e-5


def test_overfit_curve_training_nll_falls(run):
    curve = re.findall(r"^step +(\d+): training NLL ([\d.]+), held-out NLL ([\d.]+)", run[0], re.MULTILINE)
    assert len(curve) >= 2
    assert float(curve[-1][1]) < float(curve[0][1])


def test_overfit_curve_runs_from_the_start_to_the_last_step(run):
    # fit's callback counts steps taken (1..num_steps); the curve adds step 0, before training
    steps = [int(step) for step in re.findall(r"^step +(\d+): training NLL", run[0], re.MULTILINE)]
    last = int(re.search(r"after (\d+) steps: training NLL", run[0]).group(1))
    assert steps[0] == 0 and steps[-1] == last and steps == sorted(set(steps))


def test_overfit_training_nll_is_the_last_curve_point(run):
    # the callback saw the parameters fit returned: its last training NLL is the one reported after
    last_curve = re.findall(r"^step +\d+: training NLL ([\d.]+)", run[0], re.MULTILINE)[-1]
    after = re.search(r"after \d+ steps: training NLL ([\d.]+)", run[0]).group(1)
    assert last_curve == after


def test_true_density_training_set_nll_is_near_the_entropy(run):
    match = re.search(r"and vs ([\d.]+), the true density's NLL on the training set", run[0])
    # 1024 points: the standard error of -mean log p is about 0.03 nats
    assert match and abs(float(match.group(1)) - 4.22417) < 0.15


def cure_row(name, text):
    match = re.search(rf"^{re.escape(name)}\s+(\d+)\s+([\d.-]+)\s+([\d.-]+) \+- ([\d.]+)\s+([\d.-]+)\s+([\d.-]+)"
                      rf"\s+(\d+)\s+(?:-|([+-][\d.]+) \+- ([\d.]+))$", text, re.MULTILINE)
    assert match, f"no table row for {name!r}"
    steps, train, kl, se, capped, median, far_off, change, change_se = match.groups()
    return {"steps": int(steps), "train": float(train), "kl": float(kl), "se": float(se), "capped": float(capped),
            "median": float(median), "far_off": int(far_off), "change": change and float(change),
            "change_se": change_se and float(change_se)}


def test_cure_table_has_every_cure_with_finite_numbers(run):
    for name in CURES:
        row = cure_row(name, run[0])
        assert row["steps"] >= 1 and row["se"] > 0


def test_cure_table_change_is_the_difference_of_the_kls(run):
    # every row is scored on the same held-out points, so the paired change is KL(cure) - KL(none)
    none = cure_row(CURES[0], run[0])
    assert none["change"] is None
    for name in CURES[1:]:
        row = cure_row(name, run[0])
        assert abs(row["change"] - (row["kl"] - none["kl"])) < 2e-4


def test_capped_kl_is_at_most_the_kl_and_the_cap(run):
    # min(log p - log q, 5) <= log p - log q pointwise, so its mean is at most the KL (to rounding)
    for name in CURES:
        row = cure_row(name, run[0])
        assert row["capped"] <= row["kl"] + 1e-4 and row["capped"] <= 5


def test_weight_decay_pulls_the_standardising_shift_towards_zero(run):
    match = re.search(r"weight decay: the standardising Affine went from log_scale \[[^]]*\], "
                      r"shift \[\s*([\d.-]+)\s+([\d.-]+)\s*\] to \[[^]]*\], \[\s*([\d.-]+)\s+([\d.-]+)\s*\]", run[0])
    assert match
    before, after = map(float, match.groups()[:2]), map(float, match.groups()[2:])
    assert sum(b * b for b in before) > sum(a * a for a in after)


KINDS = {"range": 3, "bound": 2, "frequency": 7}          # a handful per section, each with a lesson


def test_every_claim_is_printed_with_its_kind_and_not_judged(run):
    claims = claim_lines(run[0])
    labels = [claim["label"] for claim in claims]
    assert len(set(labels)) == len(labels)
    assert {kind: sum(claim["kind"] == kind for claim in claims) for kind in KINDS} == KINDS
    assert all(claim["quick"] and not claim["flagged"] for claim in claims)
    assert not any("time" in label or "ms" in label.split() for label in labels)      # timings: the benchmark's


def test_largest_x1_range_is_the_computed_distribution(run):
    # the central 99.9% of the largest of 1024 draws, by quadrature (independent of the seed)
    claim = next(c for c in claim_lines(run[0]) if c["label"].startswith("largest x1 in the training set"))
    assert (claim["low"], claim["high"]) == (28.8, 101.3)
    median = float(re.search(r"largest x1 of 1024 draws: median ([\d.]+)", run[0]).group(1))
    assert claim["low"] < median < claim["high"]


def test_cure_frequencies_count_twenty_runs(run):
    frequencies = [c for c in claim_lines(run[0]) if c["kind"] == "frequency"]
    assert all(c["of"] == 20 and 0 <= c["runs"] <= 20 for c in frequencies)
    labels = {c["label"] for c in frequencies}
    assert {f"{cure} lowers the held-out KL" for cure in CURES[1:4]} <= labels


def test_layer_trace_ends_near_a_standard_normal(run):
    match = re.search(r"the last \(z\): mean = \(([\d.-]+), ([\d.-]+)\), std = \(([\d.]+), ([\d.]+)\)", run[0])
    mean_1, mean_2, std_1, std_2 = map(float, match.groups())
    assert abs(mean_1) < 0.5 and abs(mean_2) < 0.5 and 0.5 < std_1 < 2 and 0.5 < std_2 < 2


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_gif_is_an_animation(run):
    data = (run[1] / "figures" / "ch03_layers.gif").read_bytes()
    assert data[:6] in (b"GIF87a", b"GIF89a")
    assert data.count(b"\x21\xf9\x04") > 1          # one graphic control block per frame

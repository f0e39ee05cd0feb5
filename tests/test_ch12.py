"""Chapter 12 in --quick mode: the digits load and split as stated; the dequantisation and logit
bookkeeping is exact (round trip, Jacobian against finite differences, uniform gives log2 17);
every baseline and flow is scored in bits/dim on the same test images; the bound, the
memorisation check, the conditional flow and the IAF/MAF costs are printed (no timing claims); every
claim is printed once with its kind; the figures are written."""
import math
import re

import pytest

from chapter_runner import NUMBER, claim_lines, numbers, run_chapter

FIGURES = ["ch12_data.png", "ch12_training.png", "ch12_samples.png", "ch12_conditional.png", "this_machine/ch12_iaf_vs_maf.png"]
FLOWS = ["MAF, affine", "MAF, spline", "RealNVP"]
BASELINES = ["uniform over 17 levels", "independent pixels"] + [
    f"{model}, {space}" for space in ["pixels", "logit"]
    for model in ["diagonal Gaussian", "full Gaussian", "10-Gaussian mixture (EM)"]]
CLAIMS = {                                     # label: kind, in the order the chapter prints them
    "the logit transform saves the full Gaussian more than half a bit per pixel": "frequency",
    "mixture (EM), logit space: test bits/dim": "bound",
    "MAF, affine: test bits/dim": "bound",
    "MAF, spline: test bits/dim": "bound",
    "RealNVP: test bits/dim": "bound",
    "the spline MAF's lead over the best baseline, bits/dim": "bound",
    "bound tightening from K = 1 to K = 4, bits/dim": "bound",
    "MAF, spline: median sample-to-train distance / test-to-train": "bound",
    "MAF, spline: no sample closer to a training image than the closest test image": "frequency",
    "conditional MAF: test accuracy of argmax_c p(x | c)": "bound",
    "the conditional MAF's mixture (1/10) sum_c p(x | c) beats the unconditional affine MAF": "frequency",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch12")
    return run_chapter("ch12_digits.py", tmp_path), tmp_path


def test_split_sizes_and_label_counts_are_printed(run):
    assert "train / validation / test: 1071 / 362 / 364 images" in run[0]
    assert "test       images per digit 0-9: [36, 37, 36, 37, 37, 37, 37, 36, 35, 36]" in run[0]


def test_logit_transform_round_trips_and_recovers_the_images(run):
    error, = numbers(rf"round trip: max \|w - from_logit\(to_logit\(w\)\)\| = {NUMBER}, images recovered exactly: True",
                     run[0])
    assert error < 1e-12


def test_jacobian_term_matches_central_differences(run):
    difference, = numbers(rf"log\|dy/dw\|: formula vs central differences, max difference {NUMBER}", run[0])
    assert difference < 1e-6     # h = 1e-6 in w: rounding error ~ 1e-16 / 1e-6 per pixel, summed over 64


def test_uniform_costs_log2_17_bits_also_through_the_logit_bookkeeping(run):
    assert f"uniform over 17 levels: log2 17 = {math.log2(17):.4f} bits/dim" in run[0]
    assert f"uniform through the logit bookkeeping: {math.log2(17):.4f} bits/dim" in run[0]


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_is_scored_on_the_test_images(name, run):
    value, se = numbers(rf"  {re.escape(name)} +{NUMBER} \+- {NUMBER}", run[0])
    assert 1.5 < value < 4.1 and se >= 0


def test_uniform_and_histogram_baselines_are_exact(run):
    assert numbers(r"  uniform over 17 levels +([\d.]+)", run[0]) == [4.0875]
    # counts + 1 per pixel on the fixed training split, scored exactly: no noise, no training
    assert numbers(r"  independent pixels +([\d.]+)", run[0]) == [2.4281]


def test_logit_space_beats_pixel_space_for_the_same_gaussian(run):
    pixels, = numbers(r"  full Gaussian, pixels +([\d.]+)", run[0])
    logit, = numbers(r"  full Gaussian, logit +([\d.]+)", run[0])
    saving, = numbers(rf"the logit transform saves the full Gaussian {NUMBER} bits/dim", run[0])
    assert logit < pixels and saving == pytest.approx(pixels - logit, abs=2e-4)


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_reports_test_and_training_bits_per_dim(name, run):
    numbers(rf"{re.escape(name)}: [\d,]+ parameters, \d+ steps of \d+ in [\d.]+ s; best validation at step \d+; "
            rf"test {NUMBER} \+- {NUMBER} bits/dim", run[0])
    numbers(rf"    training images \(one noise draw\): {NUMBER} bits/dim", run[0])


def test_the_spline_lead_is_stated_against_the_best_baseline_with_its_paired_error(run):
    lead, se, ratio = numbers(rf"the spline MAF beats the best baseline \(.+?\) by "
                              rf"{NUMBER} \+- {NUMBER} bits/dim \(paired over test images: {NUMBER} standard errors\)",
                              run[0])
    assert se > 0 and ratio == pytest.approx(lead / se, abs=1)


def test_importance_weighted_bound_does_not_loosen_with_more_draws(run):
    one, = numbers(rf"K =  1 draws inside the log: {NUMBER} bits/dim", run[0])
    four, = numbers(rf"K =  4 draws inside the log: {NUMBER} bits/dim", run[0])
    assert four <= one + 0.01     # falls in expectation; 364 images leave a little noise


@pytest.mark.parametrize("name", FLOWS)
def test_memorisation_check_is_printed_per_flow(name, run):
    median, ratio, share = numbers(rf"{re.escape(name)}: \d+ samples to their nearest training image: median distance "
                                   rf"{NUMBER} \({NUMBER} x the test images'\); closer than the closest test image: "
                                   rf"{NUMBER}%", run[0])
    assert median > 0 and ratio > 0 and 0 <= share <= 100


def test_true_label_saves_at_most_log2_10_bits_per_image(run):
    saved, bound = numbers(rf"the true label saves {NUMBER} \(at most log2\(10\)/64 = {NUMBER}\)", run[0])
    assert bound == round(math.log2(10) / 64, 4) and saved <= bound + 1e-4


def test_classifier_accuracy_is_printed(run):
    accuracy, correct = numbers(r"argmax_c p\(x \| c\): test accuracy ([\d.]+)% \((\d+) of 364\)", run[0])
    assert abs(accuracy - 100 * correct / 364) < 0.06


def test_iaf_and_maf_costs_are_printed_for_each_operation(run):
    for name in ["MAF", "IAF"]:
        numbers(rf"{name}: on \d+ images, CPU ms: log_prob {NUMBER}, sample {NUMBER}, training step {NUMBER}", run[0])
    for op in ["log_prob", "sample", "training step"]:
        numbers(rf"{op}: slow direction / fast direction = {NUMBER}x \(D = 64 passes against 1\)", run[0])


def test_every_claim_is_printed_once_with_its_kind(run):
    printed = claim_lines(run[0])
    assert [(c["label"], c["kind"]) for c in printed] == list(CLAIMS.items())
    assert all(c["quick"] and not c["flagged"] for c in printed)


def test_no_claim_is_about_time(run):
    assert not any(word in c["label"] for c in claim_lines(run[0]) for word in ("ms", "time", "slow", "fast"))


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

"""Chapter 6 in --quick mode: it prints log Z with its convergence checks, the exact KL and the
ESS per energy and flow, the final loss next to -log Z, the mode shares, every claim with its
kind (bound, frequency, exact), and writes its figures."""
import math
import re

import pytest

from chapter_runner import claim_lines, run_chapter

FIGURES = ["ch06_energies.png", "ch06_modes.png"]
NAMES = ["U1", "U2", "U3", "U4"]
FLOAT = r"(-?[\d.]+(?:e[+-]?\d+)?)"
CLAIMS = {   # label: kind, in the order the chapter prints them
    "U2-U4: largest |log Z by quadrature - closed form|": "exact",
    "U1: the larger KL(q||p) of the two stacks": "bound",
    "U2: the larger KL(q||p) of the two stacks": "bound",
    "U3: the larger KL(q||p) of the two stacks": "bound",
    "U4: the larger KL(q||p) of the two stacks": "bound",
    "every fit of U3 and U4 has a larger KL(q||p) than every fit of U1 and U2": "frequency",
    "U4: both stacks' ESS below 20% though their KL(q||p) is below 0.5": "frequency",
    "U1: the larger |share of q's samples with z1 > 0 - 1/2| of the two stacks": "bound",
    "U4: the larger share of q's samples on the second branch of the two stacks (p: 0.181)": "bound",
    "smallest KL(q||p) / its standard error": "bound",
    "forward KL covers all four modes (each nearest to more than 10% of q's samples)": "frequency",
    "forward KL: mass farther than 3 sigma from every mode (p: 0.011)": "bound",
    "forward KL: KL(p||q)": "bound",
    "reverse KL keeps one mode (more than 99% of q's samples nearest it), with KL(q||p) within 0.01 of log 4":
        "frequency",
    "reverse KL: log Z by IS within 0.01 of log(k/4), k the modes holding over 1% of q": "frequency",
    "reverse KL: ESS above 90%": "frequency",
    "each fit is the better one in the divergence it was trained on": "frequency",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch06")
    return run_chapter("ch06_reverse_kl.py", tmp_path), tmp_path


def log_Z_line(name, text):
    pattern = (rf"log Z\({name}\) = {FLOAT}: halving the spacing changes it by {FLOAT}, "
               rf"a box of \[-12, 12\]\^2 by {FLOAT}")
    match = re.search(pattern, text)
    assert match, f"no log Z line for {name} in:\n{text}"
    return [float(g) for g in match.groups()]


@pytest.mark.parametrize("name", NAMES)
def test_log_Z_is_printed_to_eight_digits_and_converged(name, run):
    value, finer, wider = log_Z_line(name, run[0])
    assert re.search(rf"log Z\({name}\) = -?\d+\.\d{{8}}:", run[0])
    assert finer < 1e-8 and wider < 1e-8


@pytest.mark.parametrize("name", ["U2", "U3", "U4"])
def test_log_Z_agrees_with_the_closed_form(name, run):
    match = re.search(rf"log Z\({name}\) = .*closed form {FLOAT} \(differs by {FLOAT}\)", run[0])
    assert match and float(match.group(2)) < 1e-8


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["IAF", "coupling"])
def test_exact_kl_and_ess_are_printed_per_energy_and_flow(name, kind, run):
    pattern = (rf"{name} {kind}: loss {FLOAT} \(floor -log Z = {FLOAT}\), KL\(q\|\|p\) = {FLOAT} "
               rf"\+- {FLOAT}, ESS = {FLOAT}%")
    match = re.search(pattern, run[0])
    assert match, f"no reverse-KL report for {name} {kind}"
    loss, floor, kl, se, ess = (float(g) for g in match.groups())
    assert abs(kl - (loss - floor)) < 2e-4                # KL = loss + log Z, as printed
    assert kl > -5 * se                                   # a KL is never negative beyond its noise
    assert 0 < ess <= 100


@pytest.mark.parametrize("name", NAMES)
def test_final_training_loss_is_printed_next_to_minus_log_Z(name, run):
    assert re.search(rf"{name} IAF\s+final training loss {FLOAT} .* next to -log Z = -[\d.]+", run[0])


@pytest.mark.parametrize("kind", ["forward KL", "reverse KL"])
def test_mode_shares_of_each_fit_sum_to_one(kind, run):
    match = re.search(rf"{kind} fit: share of q's samples nearest each mode \[([^\]]+)\], "
                      rf"farther than 3 sigma from every mode {FLOAT}", run[0])
    assert match, f"no mode shares for the {kind} fit"
    shares = [float(v) for v in match.group(1).split(",")]
    assert len(shares) == 4 and abs(sum(shares) - 1) < 0.01
    assert 0 <= float(match.group(2)) <= 1


def test_both_divergences_are_printed_for_both_mixture_fits(run):
    assert len(re.findall(r"KL\(p\|\|q\) on samples of p: NLL", run[0])) == 2
    assert len(re.findall(r"KL\(q\|\|p\) on samples of q: loss", run[0])) == 2


def test_target_mode_shares_are_equal(run):
    match = re.search(r"target: share nearest each mode \[([^\]]+)\], farther than 3 sigma " + FLOAT, run[0])
    shares = [float(v) for v in match.group(1).split(",")]
    assert all(abs(s - 0.25) < 0.05 for s in shares)      # 5,000 samples in quick mode: SE 0.006
    assert abs(float(match.group(2)) - 0.011) < 0.01


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_no_fit_reaches_below_minus_log_Z(run):
    match = re.search(rf"smallest KL\(q\|\|p\) / its standard error over the 8 fits: {FLOAT}", run[0])
    assert match and float(match.group(1)) > -5


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert [c["label"] for c in claims] == list(CLAIMS)
    assert all(c["kind"] == CLAIMS[c["label"]] for c in claims)
    assert all(c["quick"] and not c["flagged"] for c in claims)       # a --quick run is never judged


def test_bounds_state_a_side_and_frequencies_a_count_of_their_runs(run):
    for c in claim_lines(run[0]):
        if c["kind"] == "bound":
            assert ("at_most" in c) != ("at_least" in c)
        if c["kind"] == "frequency":             # seeds 0-19, or 0-29 and 40-44 for the restated IS claim
            assert c["of"] in (20, 35) and 0 <= c["runs"] <= c["of"]


def test_quadrature_meets_the_closed_form_within_the_stated_tolerance(run):
    exact = [c for c in claim_lines(run[0]) if c["kind"] == "exact"]
    assert len(exact) == 1 and exact[0]["value"] <= exact[0]["tol"] == 1e-8


def test_reverse_fit_prints_the_modes_it_keeps_beside_log_Z_by_IS(run):
    match = re.search(rf"reverse KL fit keeps (\d) of the 4 modes: log Z by importance sampling {FLOAT}, "
                      rf"log\(\d/4\) = {FLOAT}", run[0])
    assert match and 1 <= int(match.group(1)) <= 4
    assert abs(float(match.group(3)) - math.log(int(match.group(1)) / 4)) < 1e-4


def test_no_timing_is_claimed(run):
    timing = r"seconds|timing|\btimes?\b|speed|faster|slower"
    assert not any(re.search(timing, c["label"]) for c in claim_lines(run[0]))


def test_gaussian_envelope_leaves_erfc_of_one_over_root_two_outside_the_window(run):
    match = re.search(rf"would leave erfc\(1/sqrt 2\) = {FLOAT} of the mass", run[0])
    assert match and float(match.group(1)) == 0.3173     # erfc(0.7071...) = 0.31731...


def test_annealing_starts_on_a_nearly_flat_U1(run):
    pattern = (rf"U1: density at \(0, 2\) and at \(0, 0\) over the density at \(2, 0\): {FLOAT} and {FLOAT}; "
               rf"raised to beta = 0.05: {FLOAT} and {FLOAT}")
    gap, centre, gap_beta, centre_beta = (float(g) for g in re.search(pattern, run[0]).groups())
    assert gap == 0.0077 and 2.8e-8 < centre < 3.0e-8    # 2 exp(-1/2 (2/0.6)^2) and exp(-17.36)
    assert gap_beta == 0.78 and centre_beta == 0.42


@pytest.mark.parametrize("name, mass", [("U3", 0.139), ("U4", 0.181)])
def test_p_mass_on_the_second_branch_is_computed_by_quadrature(name, mass, run):
    match = re.search(rf"{name}: p puts {FLOAT} of its mass on the second branch", run[0])
    assert match and abs(float(match.group(1)) - mass) < 0.002    # quick mode's coarser grid


def test_keeping_k_of_four_modes_costs_log_four_over_k(run):
    assert "KL(q||p) = log(4/k): 1.3863 for k = 1, 0.6931 for k = 2, 0.2877 for k = 3" in run[0]

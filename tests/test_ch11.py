"""Chapter 11 in --quick mode: each q(b | a) integrates to 1 and the joint KL by quadrature is
E_a of the conditional KLs; the gaussian_linear KL is printed for every budget and dimension; the
two-moons likelihood matches its simulations, its posterior's normaliser is log 2 where both
crescents lie in the prior box and puts exactly half the mass on each side of the mirror line;
every KL respects its lower bound; the likelihood check's z is Wilson-Hilferty's score of the
printed chi^2 and its bound is N(0, 1)'s 99.9th percentile; every claim is printed once with its
kind; the figures are written."""
import math
import re

import pytest

from chapter_runner import NUMBER, box_check_line, claim_lines, numbers, run_chapter

FIGURES = ["ch11_conditional_1d.png", "ch11_gaussian_linear.png", "ch11_two_moons_likelihood.png",
           "ch11_two_moons.png"]
BUDGETS = [1000, 10000, 100000]
EDGE, TOP = "two moons, x_o = (-0.227, -0.916)", "two moons, x_o = (+0.158, +1.201)"
CLAIMS = {                                     # label: kind, in the order the chapter prints them
    "largest KL(p(.|a) || q(.|a)) over a in [1, 2]": "bound",
    "the largest KL(p(.|a) || q(.|a)) sits at an end of the range, a < 1.1 or a > 1.9": "frequency",
    "joint KL of p(a) q(b | a), by quadrature": "bound",
    "D = 10, 1000 simulations: mean KL(posterior || q)": "bound",
    "D = 10, 10000 simulations: mean KL(posterior || q)": "bound",
    "D = 10, 100000 simulations: mean KL(posterior || q)": "bound",
    "D = 10: each tenfold budget divides the KL by at least 3": "frequency",
    "D = 2: the KL falls with each tenfold budget too": "frequency",
    "D = 10, 1000 simulations: the best checkpoint comes in the first 500 of 30 steps": "frequency",
    "two moons likelihood against simulations: Wilson-Hilferty z of chi^2": "bound",
    "two moons, both crescents inside the box: the larger KL(posterior || q) of the two observations": "bound",
    f"{EDGE}: q puts more than 5% of its mass outside the box": "frequency",
    f"{EDGE}: KL(posterior || q_B)": "bound",
    f"{TOP}: KL(posterior || q_B)": "bound",
    "two moons: largest |share of q_B's samples with theta_1 + theta_2 > 0 - 0.5|": "bound",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch11")
    return run_chapter("ch11_conditional.py", tmp_path), tmp_path


def test_each_conditional_density_integrates_to_one(run):
    error, = numbers(rf"integral of q\(b \| a\) over b: within {NUMBER} of 1 at all 101 values of a", run[0])
    assert error < 1e-6


def test_joint_kl_by_quadrature_agrees_with_monte_carlo(run):
    quadrature, mc, se = numbers(rf"joint KL of p\(a\) q\(b \| a\): quadrature {NUMBER}; paired Monte Carlo on "
                                 rf"\d+ held-out pairs {NUMBER} \+- {NUMBER}", run[0])
    assert quadrature >= 0 and abs(quadrature - mc) < 5 * se


def test_comparison_with_chapter_5_is_the_joint_kl_over_its_bound(run):
    joint, = numbers(rf"joint KL of p\(a\) q\(b \| a\): quadrature {NUMBER}", run[0])
    share, = numbers(rf"paired KL at most 0.024; this run's joint KL is {NUMBER}% of that bound", run[0])
    assert share == pytest.approx(100 * joint / 0.024, abs=0.06)


@pytest.mark.parametrize("dim", [10, 2])
@pytest.mark.parametrize("budget", BUDGETS)
def test_gaussian_linear_kl_is_printed_per_budget(run, dim, budget):
    pattern = (rf"D = +{dim}, +{budget} simulations: best validation loss at step +(\d+) of \d+; KL\(posterior \|\| q\) "
               rf"over \d+ held-out observations: mean {NUMBER} \+- {NUMBER}, largest {NUMBER}")
    step, mean, se, largest = numbers(pattern, run[0])
    assert mean <= largest and se > 0
    assert mean > -5 * se                        # a KL is never negative beyond its noise


@pytest.mark.parametrize("dim", [10, 2])
def test_the_fall_with_the_budget_is_reported(run, dim):
    assert re.search(rf"D = {dim}: the KL falls as the budget grows: (True|False)", run[0])


def likelihood_check(text):
    """(mass, share, chi2, dof, chi2 / dof, z) of the two-moons likelihood's box check."""
    share, mass, chi2, dof, ratio, z = box_check_line(r"box check of \d+ simulations over the histogram's window: ", text)
    return mass, share, chi2, dof, ratio, z


def test_two_moons_likelihood_matches_its_simulations(run):
    mass, share, chi2, dof, ratio, z = likelihood_check(run[0])
    assert abs(mass - 1) < 2e-3 and abs(share - 1) < 2e-3
    assert ratio == pytest.approx(chi2 / dof, abs=2e-3)
    assert abs(chi2 - dof) < 5 * math.sqrt(2 * dof)   # chi^2 has mean dof and sd sqrt(2 dof)


def test_z_is_wilson_hilferty_and_its_bound_the_normal_99_9th_percentile(run):
    _, _, chi2, dof, _, z = likelihood_check(run[0])
    expected = ((chi2 / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    assert z == pytest.approx(expected, abs=0.02)      # chi^2 is printed to 0.1
    stated = {c["label"]: c for c in claim_lines(run[0])}[
        "two moons likelihood against simulations: Wilson-Hilferty z of chi^2"]
    assert 0.5 * math.erfc(stated["at_most"] / math.sqrt(2)) == pytest.approx(1e-3, rel=0.01)


def posterior_lines(text):
    pattern = (rf"x_o = \(([-+][\d.]+), ([-+][\d.]+)\): \d+ points; log Z = {NUMBER} \(log 2 = 0.69315; halving "
               rf"the spacing changes it by {NUMBER}\), evidence p\(x_o\) = Z / 4 = {NUMBER}; mass with "
               rf"theta_1 \+ theta_2 > 0: {NUMBER}; entropy {NUMBER}")
    return [[float(g) for g in match] for match in re.findall(pattern, text)]


def test_posterior_normaliser_is_log_two_when_both_crescents_fit_in_the_box(run):
    lines = posterior_lines(run[0])
    assert len(lines) == 4
    origin = lines[0]                                  # x_o = (0, 0): both crescents well inside
    # --quick's spacing is 0.0033, a third of the crescent's thickness: first-order error ~7e-3 at its ends
    assert origin[:2] == [0.0, 0.0] and abs(origin[2] - math.log(2)) < 1e-2
    for line in lines:
        assert line[2] <= math.log(2) + 1e-2           # the box can only cut mass away
        assert line[3] < 1e-2                          # the quadrature has converged to this


def test_posterior_puts_half_its_mass_on_each_side_of_the_mirror_line(run):
    assert all(abs(line[5] - 0.5) < 1e-9 for line in posterior_lines(run[0]))


def moons_reports(text):
    pattern = (rf"x_o = \([-+][\d.]+, [-+][\d.]+\): KL\(posterior \|\| q\) by quadrature = {NUMBER}; q's mass "
               rf"where p > 0: {NUMBER}, so KL >= -log of it = {NUMBER}; q\(B \| x_o\) = {NUMBER} \+- {NUMBER}, "
               rf"KL\(posterior \|\| q_B\) = {NUMBER}; of q_B's samples, {NUMBER} have theta_1 \+ theta_2 > 0")
    found = [[float(g) for g in match] for match in re.findall(pattern, text)]
    assert len(found) == 4
    return found


def test_two_moons_kl_is_printed_and_above_its_lower_bound(run):
    for kl, mass, bound, *_ in moons_reports(run[0]):
        assert 0 < mass <= 1 + 1e-3 and kl >= bound - 1e-3


def test_restricting_q_to_the_box_adds_log_q_of_the_box(run):
    for kl, _, _, kept, se, kl_box, share in moons_reports(run[0]):
        assert 0 < kept <= 1 and se <= 0.5 / math.sqrt(2000) + 1e-4
        assert kl_box == pytest.approx(kl + math.log(kept), abs=2e-4) and kl_box <= kl
        assert 0 <= share <= 1


def test_every_claim_is_printed_once_with_its_kind(run):
    printed = claim_lines(run[0])
    assert [(c["label"], c["kind"]) for c in printed] == list(CLAIMS.items())
    assert all(c["quick"] and not c["flagged"] for c in printed)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout

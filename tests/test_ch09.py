"""Chapter 9 in --quick mode: one planar and one radial layer described by their numbers, the
reparameterisation keeping c > -1, check_layer passing on both layers, the primitives' node
counts and gradients against the readable forward maps, log Z converged, the exact KL, ESS and
log Z by importance sampling printed for all 24 cells of Figure 3 (and gathered in one table),
the exact inverse checked against samples, every claim printed once with its kind, and every
figure written. A --quick run trains for 4 steps, so no test compares its trained numbers with
the full run's claims; the identities (gradients, round trips) hold in any run and are checked."""
import re

import pytest

from chapter_runner import box_check_line, claim_lines, run_chapter

FIGURES = ["ch09_one_layer.png", "ch09_figure3.png", "ch09_inverse.png", "ch09_kl_vs_depth.png"]
NAMES = ["U1", "U2", "U3", "U4"]
FAMILIES = ["planar", "radial"]
DEPTHS = [2, 8, 32]
FLOAT = r"(-?[\d.]+(?:e[+-]?\d+)?)"
CLAIMS = {
    **{f"{family} K=32 gradient by the primitive against the readable forward map, max relative difference":
       "exact" for family in FAMILIES},
    **{f"{family} K=32 gradient as a Stack against the primitive layer by layer, max absolute difference":
       "exact" for family in FAMILIES},
    "U1 planar K=32 KL(q||p)": "bound",
    "U2 planar K=32 KL(q||p)": "bound",
    "U1 planar K=32 ESS": "bound",
    "largest KL(q||p) of the eight K = 32 fits": "bound",
    "two radial layers fit U1 better than two planar ones": "frequency",
    "eight planar layers fit U2 better than eight radial ones": "frequency",
    "log Z by IS within 0.05 of the quadrature in every cell whose ESS is above 50%": "frequency",
    **{f"U1 {family} K=32 chi^2 score z of the density by inversion against the samples": "bound"
       for family in FAMILIES},
    "the same test rejects the density without the log-dets (z above 3.09), for both flows": "frequency",
    "largest max |f(f^-1(x)) - x| of the two flows": "exact",
    "largest max |log q by inversion - log q forward| of the two flows": "exact",
    "the KL falls from K = 2 to K = 32 on all four energies, for both families": "frequency",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch09")
    return run_chapter("ch09_planar_radial.py", tmp_path), tmp_path


def report(name, family, K, text):
    pattern = (rf"^{name} {family} K={K}: loss {FLOAT} \(floor -log Z = {FLOAT}\), KL\(q\|\|p\) = {FLOAT} "
               rf"\+- {FLOAT}, ESS = {FLOAT}% \(log Z by IS {FLOAT}; n = (\d+)\)$")
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no reverse-KL report for {name} {family} K={K}"
    return [float(g) for g in match.groups()]


@pytest.mark.parametrize("c", ["+3.00", "-0.80"])
def test_planar_layer_moves_no_point_farther_than_u_hat_and_is_flat_far_from_its_line(c, run):
    match = re.search(rf"planar layer, c = w\^T u_hat = {re.escape(c)}, \|\|u_hat\|\| = {FLOAT}: largest move "
                      rf"{FLOAT}; \|log det\| up to {FLOAT} in the band, {FLOAT} where", run[0])
    assert match, f"no line for the planar layer with c = {c}"
    norm, move, band, far = (float(g) for g in match.groups())
    assert move <= norm + 1e-3 and move > 0.99 * norm        # tanh reaches 0.99+ inside [-3, 3]^2
    assert far < 0.05 < band                                 # log(1 + |c| sech^2(3)) <= 0.03 for |c| <= 3


@pytest.mark.parametrize("beta", ["+1.00", "-0.45"])
def test_radial_layer_moves_no_point_farther_than_beta(beta, run):
    match = re.search(rf"radial layer, alpha = 0.5, beta = {re.escape(beta)}: largest move {FLOAT} "
                      rf"\(\|beta\| = {FLOAT}\)", run[0])
    assert match and float(match.group(1)) <= float(match.group(2))


def test_reparameterisation_keeps_c_above_minus_one(run):
    match = re.search(rf"free u with w\^T u = -5.00 -> c = w\^T u_hat = {FLOAT} > -1", run[0])
    assert match and float(match.group(1)) == -0.9933                # softplus(-5) - 1


@pytest.mark.parametrize("name", ["Planar", "Radial"])
def test_check_layer_passes_on_both_layers(name, run):
    match = re.search(rf"check_layer on {name} at \d+ random parameter draws, 64 points each: worst error {FLOAT}",
                      run[0])
    assert match and float(match.group(1)) < 1e-6


@pytest.mark.parametrize("family", FAMILIES)
def test_the_primitive_records_a_fraction_of_the_readable_nodes_and_the_same_gradient(family, run):
    match = re.search(rf"{family} K=32, one reverse-KL step on U1 at batch \d+: (\d+) autograd nodes with the "
                      rf"readable forward map, (\d+) with the primitive, (\d+) as a Stack", run[0])
    assert match, f"no node counts for {family}"
    readable, primitive, stack = (int(g) for g in match.groups())
    assert primitive == 6 * 32 + 21 and readable > 4 * primitive     # 6 per layer (3 parameter reads) + 21 for the rest
    assert stack == 4 + 21                       # one parameter read, the stack, its two outputs; the rest as before
    gradient = [c for c in claim_lines(run[0]) if c["label"].startswith(f"{family} K=32 gradient by the primitive")]
    assert len(gradient) == 1 and gradient[0]["value"] <= gradient[0]["tol"]


@pytest.mark.parametrize("name", NAMES)
def test_log_Z_is_printed_to_eight_digits_and_converged(name, run):
    match = re.search(rf"log Z\({name}\) = (-?\d+\.\d{{8}}) \(halving the spacing changes it by {FLOAT}\)", run[0])
    assert match and float(match.group(2)) < 1e-8


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("K", DEPTHS)
def test_exact_kl_ess_and_log_Z_by_IS_are_printed_for_every_cell(name, family, K, run):
    loss, floor, kl, se, ess, log_Z_is, n = report(name, family, K, run[0])
    assert abs(kl - (loss - floor)) < 2e-4                # KL = loss + log Z, as printed
    assert kl > -5 * se                                   # a KL is never negative beyond its noise
    assert 0 <= ess <= 100 and n >= 1000                  # printed to 0.1%: a tiny ESS prints as 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("family", FAMILIES)
def test_table_row_repeats_the_reports(name, family, run):
    match = re.search(rf"^{name} {family}\s+((?:{FLOAT}%?\s*){{10}})$", run[0], re.MULTILINE)
    assert match, f"no table row for {name} {family}"
    values = [float(v.rstrip("%")) for v in match.group(1).split()]
    for K, kl, ess, log_Z_is in zip(DEPTHS, values[0:3], values[3:6], values[6:9]):
        _, _, kl_report, _, ess_report, log_Z_is_report, _ = report(name, family, K, run[0])
        assert abs(kl - kl_report) < 1e-4 and abs(ess - ess_report) < 0.051
        assert abs(log_Z_is - log_Z_is_report) < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("K", DEPTHS)
def test_training_step_time_is_printed(family, K, run):
    assert re.search(rf"^{family} K={K}: {FLOAT} ms per training step", run[0], re.MULTILINE)


@pytest.mark.parametrize("family", FAMILIES)
def test_density_by_inversion_matches_samples(family, run):
    by_samples, by_density, chi2, dof, ratio, z = box_check_line(re.escape(f"U1 {family} K=32, box check on [-4, 4]^2: "), run[0])
    match = re.search(rf"U1 {family} K=32, box check .*\n   with the log-dets left out: chi\^2/dof = {FLOAT}, "
                      rf"z = \+?{FLOAT}", run[0])
    assert match, f"no chi^2 line without the log-dets for {family}"
    wrong, z_wrong = (float(g) for g in match.groups())
    assert abs(by_density - by_samples) < 0.01                # 20,000 samples in quick mode
    assert dof >= 10 and abs(ratio - chi2 / dof) < 0.05 / dof + 1e-3    # chi^2 is printed to 0.1
    assert ratio < 2 and abs(z) < 4                           # Poisson noise only
    assert wrong > 3 * ratio and wrong > 3 and z_wrong > 3.09     # the test can tell a wrong density


@pytest.mark.parametrize("family", FAMILIES)
def test_inverse_round_trips_to_rounding(family, run):
    pattern = (rf"U1 {family} K=32, box check .*\n.*\n   max \|f\(f\^-1\(x\)\) - x\| over the \d+ grid points: "
               rf"{FLOAT}; max \|log q by inversion - log q forward\| over 20,000 samples: {FLOAT}")
    match = re.search(pattern, run[0])
    assert match and float(match.group(1)) < 1e-12 and float(match.group(2)) < 1e-12


def test_log_Z_by_importance_sampling_line_is_printed(run):
    match = re.search(r"(\d+) of 24 cells have an ESS above 50%; among them log Z by IS is at most (\S+) from",
                      run[0])
    assert match and 0 <= int(match.group(1)) <= 24


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written(run, name):
    stdout, tmp_path = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}" in stdout


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert {c["label"]: c["kind"] for c in claims} == CLAIMS and len(claims) == len(CLAIMS)
    assert all(c["quick"] for c in claims) and not any(c["flagged"] for c in claims)


def test_every_identity_holds_even_in_a_quick_run(run):
    exact = [c for c in claim_lines(run[0]) if c["kind"] == "exact"]
    assert len(exact) == 6 and all(abs(c["value"] - c["expected"]) <= c["tol"] for c in exact)

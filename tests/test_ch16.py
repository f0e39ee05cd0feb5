"""Chapter 16 in --quick mode: the binarised digits and their independent-pixel baseline, the
quadrature of log p(x) converged, the bounds ordered ELBO <= L_k <= log p(x) for every family of
q (a theorem, so it holds after any amount of training), the KL gap never below zero beyond
noise, the MAF's pass count, every claim printed once with its kind, the figures written."""
import re

import pytest

from chapter_runner import NUMBER, claim_lines, numbers, run_chapter

FIGURES = ["ch16_posterior.png", "ch16_bounds.png"]
FAMILIES = ["Gaussian", "K=2", "K=8", "K=32", "IAF"]
KINDS = {"quadrature: largest change of log p(x) from a grid half as fine": "bound",
         "test -log p(x) of the model, nats per image": "bound",
         "median image's KL gap, diagonal Gaussian": "bound",
         "median image's KL gap, Gaussian + 2 planar steps": "bound",
         "median image's KL gap, Gaussian + 8 planar steps": "bound",
         "median image's KL gap, Gaussian + 32 planar steps": "bound",
         "median image's KL gap, Gaussian + 2 IAF steps": "bound",
         "median image's KL gap: Gaussian > K=2 > K=8": "frequency",
         "median image's KL gap: K=32 below the Gaussian's and K=2's": "frequency",
         "median image's KL gap: K=32 below K=8": "frequency",
         "median image's KL gap: 2 IAF steps below K=2 and above K=8": "frequency",
         "median image's shortfall of L_k from log p(x), the largest among the five q": "bound",
         "VAE: test -log p(x) in bits/dim (binarised digits)": "bound"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch16")
    return run_chapter("ch16_vae.py", tmp_path), tmp_path


def table(stdout):
    """The rows of section 4's table: family -> (-ELBO, -L_k, -log p(x), mean KL gap, mean L gap, median KL gap,
    median L gap)."""
    rows = {}
    for family in FAMILIES:
        rows[family] = numbers(rf"(?m)^{re.escape(family)} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}"
                               rf" +{NUMBER} +\d+%$", stdout)
    return rows


def test_the_split_and_the_independent_pixel_baseline(run):
    stdout, _ = run
    assert "train / test images: 1071 / 364; pixels on: 0.324" in stdout
    nats, bits = numbers(rf"independent Bernoulli pixels: test -log p\(x\) = {NUMBER} nats per image = {NUMBER}",
                         stdout)
    assert nats == pytest.approx(25.235, abs=1e-3) and bits == pytest.approx(nats / (64 * 0.6931472), abs=1e-4)


def test_quadrature_agrees_with_a_grid_half_as_fine(run):
    difference, = numbers(rf"against \d+\^2: max difference {NUMBER}", run[0])
    assert difference < 1e-4


def test_bounds_are_ordered_for_every_family(run):
    """ELBO <= L_k on every image by Jensen (the same draws), so in the mean too; E L_k <= log p(x) only in
    expectation: after --quick's 30 steps q is close to the prior and to the posterior, L_k sits within noise of
    log p(x), and its mean may land a little above it. So that side is checked in standard errors."""
    stdout = run[0]
    for family, (neg_elbo, neg_iwae, neg_log_px, kl_gap, l_gap, median_gap, _) in table(stdout).items():
        assert neg_elbo >= neg_iwae, family
        assert neg_iwae >= neg_log_px - 0.01, family
        assert kl_gap == pytest.approx(neg_elbo - neg_log_px, abs=2e-3), family
        assert kl_gap >= -0.01 and l_gap >= -0.01 and median_gap >= -0.01, family
    assert re.search(r"ELBO <= L_\d+ on every test image, for every family \(Jensen, the same draws\): True", stdout)
    line = re.search(r"mean L_\d+ - log p\(x\) in standard errors .*: (.*)", stdout)
    z = dict(part.split(" ") for part in line.group(1).split(", "))
    assert list(z) == FAMILIES and all(float(value) < 3.6 for value in z.values()), z


def test_the_claims_state_the_tables_numbers(run):
    """The claims are on the median test image (robust to one image that q misses by hundreds of nats)."""
    rows, claims = table(run[0]), {c["label"]: c for c in claim_lines(run[0])}
    for family, label in [("Gaussian", "diagonal Gaussian"), ("K=2", "Gaussian + 2 planar steps"),
                          ("K=8", "Gaussian + 8 planar steps"), ("K=32", "Gaussian + 32 planar steps"),
                          ("IAF", "Gaussian + 2 IAF steps")]:
        assert claims[f"median image's KL gap, {label}"]["value"] == pytest.approx(rows[family][5], abs=1e-3), family
    shortfall = claims["median image's shortfall of L_k from log p(x), the largest among the five q"]["value"]
    assert shortfall == pytest.approx(max(row[6] for row in rows.values()), abs=1e-4)


def test_every_family_shares_one_log_p_x(run):
    assert len({row[2] for row in table(run[0]).values()}) == 1


def test_maf_needs_one_pass_per_latent_to_sample(run):
    assert re.search(r" 2 latents: MADE passes to sample, IAF 1, MAF 2;", run[0])
    assert re.search(r"32 latents: MADE passes to sample, IAF 1, MAF 32;", run[0])


def test_likelihoods_in_bits_per_dim(run):
    stdout, _ = run
    independent, vae = numbers(rf"binarised digits: independent pixels {NUMBER}, VAE -log p\(x\) {NUMBER}", stdout)
    neg_log_px = table(stdout)["Gaussian"][2]
    assert vae == pytest.approx(neg_log_px / (64 * 0.6931472), abs=1e-4)
    hist17, = numbers(rf"17-level digits \(chapter 12\): independent pixels {NUMBER}", stdout)
    assert hist17 == pytest.approx(2.4281, abs=1e-4)        # chapter 12's histogram baseline, same split


def test_every_claim_is_printed_once_with_its_kind(run):
    claims = claim_lines(run[0])
    assert {c["label"]: c["kind"] for c in claims} == KINDS
    assert len(claims) == len(KINDS)
    assert all(c["quick"] for c in claims)


def test_figures_are_written(run):
    _, tmp_path = run
    for name in FIGURES:
        assert (tmp_path / "figures" / name).stat().st_size > 10_000, name

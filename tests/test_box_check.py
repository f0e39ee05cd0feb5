"""box_check: samples of a density pass (chi^2 / dof near 1, z about N(0, 1)), samples of another
density fail, and the masses are the density's integrals over the boxes."""
import numpy as np
import pytest

from tinyflow.evaluate import box_check, format_box_check


def gaussian_log_density(points, scale=1.0):
    return -0.5 * np.sum((points / scale) ** 2, axis=1) - points.shape[1] * np.log(scale * np.sqrt(2 * np.pi))


@pytest.mark.parametrize("dim", [1, 2])
def test_samples_of_the_density_pass(dim):
    """Over 200 draws of 20,000 samples, z stays within what N(0, 1) allows (99.9% below 3.1) and
    its mean is near 0."""
    rng = np.random.default_rng(0)
    z = [box_check(gaussian_log_density, rng.standard_normal((20_000, dim)), [(-3, 3)] * dim, 12)["z"]
         for _ in range(200)]
    assert max(z) < 4.0 and abs(np.mean(z)) < 0.25


def test_samples_of_another_density_fail():
    rng = np.random.default_rng(1)
    result = box_check(gaussian_log_density, 1.1 * rng.standard_normal((20_000, 2)), [(-3, 3)] * 2, 12)
    assert result["chi2"] / result["dof"] > 3 and result["z"] > 10


def test_masses_are_the_densitys_integrals_over_the_window():
    result = box_check(gaussian_log_density, np.zeros((10, 2)), [(-1, 1), (-2, 2)], 4, sub=16)
    from math import erf, sqrt
    exact = erf(1 / sqrt(2)) * erf(2 / sqrt(2))              # P(|x1| < 1) P(|x2| < 2)
    assert result["mass_inside"] == pytest.approx(exact, rel=1e-3)
    assert result["share_inside"] == 1.0 and result["counts"].shape == (4, 4)


def test_limits_must_match_the_dimension():
    with pytest.raises(ValueError, match=r"limits must be one \(lo, hi\) pair per coordinate, shape \(2, 2\)"):
        box_check(gaussian_log_density, np.zeros((10, 2)), [(-1, 1)], 4)


def test_the_formatted_line_carries_the_checks_numbers():
    check = {"share_inside": 0.98765, "mass_inside": 0.98712, "chi2": 140.04, "dof": 143, "z": -0.1234}
    assert format_box_check(check) == ("0.9877 of the samples in the window (the density's mass there 0.9871); "
                                          "chi^2 = 140.0 on 143 degrees of freedom (chi^2 / dof = 0.979), z = -0.12")

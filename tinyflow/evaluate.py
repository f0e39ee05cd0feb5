"""Honest numbers for a fitted flow on a target whose density is known.

    held-out NLL   = -mean log q(x),  x ~ p fresh (never seen in training)
    entropy H(p)   = the lowest NLL any model can reach
    gap            = NLL - H(p)          (a Monte-Carlo estimate of KL(p || q))
    paired KL      = mean(log p(x) - log q(x)) with standard error std / sqrt(n)

The gap and the paired KL estimate the same number, but the paired estimate subtracts
log p and log q at the same points, so the target's own spread cancels: its standard
error is far smaller than the gap's Monte-Carlo error (a few thousandths of a nat at n = 1e5).

box_check asks the other question a flow's numbers must answer: do its samples (drawn
forward) follow its density (computed by inversion)? Chapters 9, 11, 13 and 14 use it.
"""
import numpy as onp


def held_out_report(flow, params, target, rng, n=100_000, context=None):
    """Return a dict of the numbers above, computed on n fresh samples of the target.
    For a conditional flow q(x | c), target is p(x | c) at one context c, and context=c is that
    row ((C,), or a number when C = 1), given to the flow with every sample."""
    x = target.sample(rng, n)
    log_q = onp.asarray(flow.log_prob(params, x) if context is None else flow.log_prob(params, x, context=context))
    log_p = onp.asarray(target.log_prob(x))
    diff = log_p - log_q
    nll = -log_q.mean()
    return {"n": n, "nll": nll, "entropy": target.entropy, "gap": nll - target.entropy,
            "kl": diff.mean(), "kl_se": diff.std(ddof=1) / onp.sqrt(n),
            "kl_median": onp.median(diff), "far_off": int(onp.sum(onp.abs(diff) > 5))}


def format_report(report, label="held-out"):
    """One line: held-out NLL, entropy, gap and the paired KL +- its standard error."""
    return (f"{label}: NLL {report['nll']:.5f}, entropy {report['entropy']:.5f}, "
            f"gap {report['gap']:.5f}, KL = mean(log p - log q) = {report['kl']:.5f} "
            f"+- {report['kl_se']:.5f} (n = {report['n']})")


def format_box_check(check):
    """One line for a box_check result: the samples' share of the window against the density's
    mass there, chi^2 on its degrees of freedom, and z."""
    return (f"{check['share_inside']:.4f} of the samples in the window (the density's mass there "
            f"{check['mass_inside']:.4f}); chi^2 = {check['chi2']:.1f} on {check['dof']} degrees of freedom "
            f"(chi^2 / dof = {check['chi2'] / check['dof']:.3f}), z = {check['z']:+.2f}")


def box_check(log_density, samples, limits, num_boxes, sub=16):
    """Do samples follow a density? Cut the window limits = [(lo, hi), ...] (one pair per
    coordinate) into num_boxes boxes per coordinate, integrate the density over each box by the
    midpoint rule on sub points per coordinate, and compare with the samples that fall in each:

        e_i = (samples in the window) * mass_i / (mass of the window),    n_i = samples in box i
        chi^2 = sum over boxes with e_i >= 5 of (n_i - e_i)^2 / e_i,        dof = (those boxes) - 1

    If the samples come from the density, the counts differ from e_i by Poisson noise only and
    chi^2 / dof is near 1; z = Wilson and Hilferty's normal score of chi^2, ((chi^2/dof)^(1/3) -
    (1 - 2/(9 dof))) / sqrt(2/(9 dof)), is then about N(0, 1), whatever dof. A log-det left out, or
    an inverse that is wrong somewhere, shows as chi^2 / dof far above 1.

    The midpoint rule's error in a mass shrinks as 1/sub^2 but the counts' noise as 1/sqrt(N), so
    with many samples a coarse rule alone pushes z up: on chapter 13's banana, 200,000 draws of the
    true density gave a mean z of 0.4-0.8 with sub = 8, 0.13 with 12 and about 0 with 16.

    log_density: (M, D) -> (M,); samples (N, D). Returns {"chi2", "dof", "z", "counts", "expected",
    "mass_inside" (the density's integral over the window), "share_inside" (the samples' share in it)}."""
    samples = onp.asarray(samples, dtype=float)
    dim = samples.shape[1]
    if onp.shape(limits) != (dim, 2):
        raise ValueError(f"limits must be one (lo, hi) pair per coordinate, shape ({dim}, 2), got {onp.shape(limits)}")
    # midpoints of the sub x sub ... cells inside every box, coordinate by coordinate
    axes = [lo + (onp.arange(num_boxes * sub) + 0.5) * (hi - lo) / (num_boxes * sub) for lo, hi in limits]
    cell = onp.prod([(hi - lo) / (num_boxes * sub) for lo, hi in limits])
    points = onp.stack(onp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
    density = onp.exp(onp.asarray(log_density(points))).reshape([num_boxes, sub] * dim)
    mass = density.sum(axis=tuple(range(1, 2 * dim, 2))) * cell
    counts, _ = onp.histogramdd(samples, bins=num_boxes, range=limits)
    expected = counts.sum() * mass / mass.sum()
    used = expected >= 5
    chi2, dof = float(onp.sum((counts[used] - expected[used]) ** 2 / expected[used])), int(used.sum()) - 1
    z = ((chi2 / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / onp.sqrt(2 / (9 * dof)) if dof > 0 else onp.nan
    return {"chi2": chi2, "dof": dof, "z": float(z), "counts": counts, "expected": expected,
            "mass_inside": float(mass.sum()), "share_inside": float(counts.sum() / len(samples))}

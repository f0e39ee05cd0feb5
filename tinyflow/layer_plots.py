"""Seeing what each layer of a 2D flow does: four figure kinds, matplotlib only.

    warped_grid(flow, params)              the lines of a grid in z-space, drawn after each layer
    quadrant_scatter(flow, params, z)      base points coloured by the quadrant of z, after each layer
    density_after_layers(flow, params, z)  q_k, the density of the flow cut after its first k layers:
                                           log q_k(y) = log p_base(z) + sum_{j <= k} log|det d f_j^-1 / d input|
    log_det_map(ax, flow, params, ...)     log|det df/dz| per point, as a heat map

Row figures have one panel per stage: stage 0 is the base space (z), stage k is the space after
layer k, stage K is the data space (x). Pass `stages` to draw only some of them.
"""
import matplotlib.pyplot as plt
import numpy as onp

from .flow import Flow
from .plotting import grid, plot_density

QUADRANT_COLORS = onp.array(["tab:blue", "tab:orange", "tab:green", "tab:red"])


def stage_title(flow, k):
    """'z (base)', 'after 1: AffineCoupling', ..., the last one marked x (data)."""
    if k == 0:
        return "z (base)"
    name = f"after {k}: {type(flow.layers[k - 1]).__name__}"
    return name + " = x" if k == len(flow.layers) else name


def truncated(flow, params, k):
    """The flow made of the base and layers 1..k, with its params: itself a Flow."""
    return Flow(flow.base, flow.layers[:k]), {"base": params["base"], "layers": params["layers"][:k]}


def forward_log_dets(flow, params, z):
    """log|det d f_k / d input| of every layer along the forward pass from z (N, 2): (K, N)."""
    log_dets = []
    for layer, p in zip(flow.layers, params["layers"]):
        z, log_det = layer.forward(p, z)
        log_dets.append(onp.asarray(log_det))
    return onp.array(log_dets).reshape(len(flow.layers), len(z))


def _row(num_panels, size=2.8):
    fig, axes = plt.subplots(1, num_panels, figsize=(size * num_panels, size + 0.4), squeeze=False)
    return fig, axes[0]


def _stages(flow, stages):
    return list(range(len(flow.layers) + 1)) if stages is None else list(stages)


def warped_grid(flow, params, lim=3.0, num_lines=13, num_points=200, stages=None):
    """Images of the lines z1 = c and z2 = c (c in [-lim, lim]) after each layer. Returns a Figure
    with one panel per stage; lines of constant z1 are blue, of constant z2 orange."""
    c, t = onp.linspace(-lim, lim, num_lines), onp.linspace(-lim, lim, num_points)
    vertical = [onp.stack([onp.full_like(t, ci), t], axis=1) for ci in c]     # z1 = c, (num_points, 2)
    horizontal = [onp.stack([t, onp.full_like(t, ci)], axis=1) for ci in c]   # z2 = c
    lines = onp.concatenate(vertical + horizontal)                             # (2 * num_lines * num_points, 2)
    steps = flow.trace(params, lines)
    fig, axes = _row(len(_stages(flow, stages)))
    for ax, k in zip(axes, _stages(flow, stages)):
        segments = onp.asarray(steps[k]).reshape(2 * num_lines, num_points, 2)
        for i, segment in enumerate(segments):
            ax.plot(segment[:, 0], segment[:, 1], lw=0.7, color="tab:blue" if i < num_lines else "tab:orange")
        ax.set(title=stage_title(flow, k), xlabel="coordinate 1", ylabel="coordinate 2")
    fig.suptitle(f"a grid of base points z in [-{lim:g}, {lim:g}]^2, pushed through the flow layer by layer "
                 "(blue: lines z1 = const, orange: lines z2 = const)")
    fig.tight_layout()
    return fig


def quadrant_scatter(flow, params, z, stages=None):
    """Base points z (N, 2) coloured by their quadrant (sign of z1, sign of z2), followed through
    every layer. Returns a Figure with one scatter panel per stage."""
    z = onp.asarray(z)
    colors = QUADRANT_COLORS[2 * (z[:, 0] < 0) + (z[:, 1] < 0)]
    steps = flow.trace(params, z)
    fig, axes = _row(len(_stages(flow, stages)))
    for ax, k in zip(axes, _stages(flow, stages)):
        points = onp.asarray(steps[k])
        ax.scatter(points[:, 0], points[:, 1], c=colors, s=2, alpha=0.6, linewidths=0)
        ax.set(title=stage_title(flow, k), xlabel="coordinate 1", ylabel="coordinate 2")
    fig.suptitle("base samples coloured by the quadrant of z, followed through each layer")
    fig.tight_layout()
    return fig


def _limits(points, pad=0.1):
    """A view holding 99% of the points in each coordinate, padded by 10%."""
    lo, hi = onp.percentile(points, [0.5, 99.5], axis=0)
    return [(l - pad * (h - l), h + pad * (h - l)) for l, h in zip(lo, hi)]


def density_after_layers(flow, params, z, stages=None, n=150):
    """Heat maps of q_k, the density after the first k layers, one panel per stage k. The base
    points z (N, 2) only set each panel's view (where their images after k layers lie).
    Returns a Figure."""
    steps = flow.trace(params, onp.asarray(z))
    fig, axes = _row(len(_stages(flow, stages)))
    for ax, k in zip(axes, _stages(flow, stages)):
        flow_k, params_k = truncated(flow, params, k)
        xlim, ylim = _limits(onp.asarray(steps[k]))
        plot_density(ax, lambda points: flow_k.log_prob(params_k, points), xlim, ylim, n,
                     title=f"q_{k}: " + stage_title(flow, k))
        ax.set(xlabel="coordinate 1", ylabel="coordinate 2")
    fig.suptitle("the density of the flow cut after its first k layers")
    fig.tight_layout()
    return fig


def log_det_map(ax, flow, params, xlim, ylim, where="base", layer=None, n=150):
    """Heat map of the forward log|det| per point on an n x n grid over xlim x ylim.

    where="base": the grid holds base points z, coloured by log|det df/dz| at z.
    where="data": the grid holds data points x, coloured by log|det df/dz| at z = f^-1(x)
                  (= -log|det df^-1/dx|: positive where the flow spreads mass out).
    layer=None sums every layer's log-det; layer=k (1-based) shows only layer k's, taken at
    the point that reaches layer k. Returns the image (for a colorbar).
    """
    if where not in ("base", "data"):
        raise ValueError(f'where must be "base" or "data", got {where!r}')
    if layer is not None and not 1 <= layer <= len(flow.layers):
        raise ValueError(f"layer must be None or in 1..{len(flow.layers)}, got {layer}")
    X, Y, points = grid(xlim, ylim, n)
    z = points if where == "base" else onp.asarray(flow.trace(params, points, inverse=True)[-1])
    log_dets = forward_log_dets(flow, params, z)
    value = log_dets.sum(axis=0) if layer is None else log_dets[layer - 1]
    image = ax.pcolormesh(X, Y, value.reshape(X.shape), shading="auto", cmap="RdBu_r",
                          vmin=-onp.abs(value).max(), vmax=onp.abs(value).max())
    which = "all layers" if layer is None else f"layer {layer}: {type(flow.layers[layer - 1]).__name__}"
    space = "base points z" if where == "base" else "data points x"
    ax.set(title=f"forward log|det| ({which})\nover {space}", xlim=xlim, ylim=ylim,
           xlabel="coordinate 1", ylabel="coordinate 2")
    return image

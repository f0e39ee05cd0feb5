"""What every chapter shares: its command-line flags, where figures go, and density grids.

Figures are written to <repository>/figures by default, wherever the chapter is run from,
and to --figures-dir when given (the tests use a temporary directory so they never
overwrite the committed figures).
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as onp


def chapter_args(description, argv=None):
    """--quick (a few seconds: fewer steps, smaller samples), --figures-dir DIR, --seed N.
    parse_known_args, so the same cell also runs inside Jupyter (which adds its own flags)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast run with fewer steps")
    parser.add_argument("--figures-dir", default=None, help="where to write figures (default: figures/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    args, _ = parser.parse_known_args(argv)
    args.figures_dir = figures_dir(args.figures_dir)
    return args


def figures_dir(path=None):
    """The directory figures go to: `path` if given, else the repository's figures/."""
    if path is not None:
        directory = Path(path)
    else:
        root = Path(__file__).resolve().parents[1]
        directory = root / "figures" if (root / "chapters").is_dir() else Path.cwd() / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def savefig(fig, name, directory):
    """Save `fig` as directory/name (PNG), close it, and print where it went."""
    path = Path(directory) / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return path


def grid(xlim, ylim, n=200):
    """A regular n x n grid: returns (X, Y, points) with points of shape (n*n, 2), float64."""
    X, Y = onp.meshgrid(onp.linspace(*xlim, n), onp.linspace(*ylim, n))
    return X, Y, onp.stack([X.ravel(), Y.ravel()], axis=1)


def plot_density(ax, log_prob, xlim, ylim, n=200, title=None, cmap="viridis"):
    """Heat map of exp(log_prob(points)) on a grid; log_prob maps (M, 2) -> (M,). Returns the image."""
    X, Y, points = grid(xlim, ylim, n)
    density = onp.exp(onp.asarray(log_prob(points))).reshape(X.shape)
    image = ax.pcolormesh(X, Y, density, shading="auto", cmap=cmap)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    return image

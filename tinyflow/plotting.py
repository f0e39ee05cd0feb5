"""What every chapter shares: its command-line flags, where figures go, and density grids.

Figures are written to --figures-dir when given (the tests use a temporary directory so they
never overwrite the committed figures). Otherwise a chapter run as a script writes to
<repository>/figures, wherever it is run from, and a chapter run as a notebook writes to
figures/ in the notebook's working directory and shows each figure in the notebook.

A figure of this machine's timings (savefig(..., measured=True)) goes to a this_machine/
subdirectory instead, which git ignores: timings differ on every run, so a student's run must not
show the committed figures as modified. The committed copy, from the machine the chapter was
written on, sits in figures/ itself.
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as onp

from .progress import in_jupyter


def chapter_args(description, argv=None):
    """--quick (a few seconds: fewer steps, smaller samples), --figures-dir DIR, --seed N.
    parse_known_args, so the same cell also runs inside Jupyter (which adds its own flags)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast run with fewer steps")
    parser.add_argument("--figures-dir", default=None, help="where to write figures (default: the repository's "
                        "figures/; in Jupyter, figures/ in the working directory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    args, _ = parser.parse_known_args(argv)
    args.figures_dir = figures_dir(args.figures_dir)
    return args


def figures_dir(path=None):
    """The directory figures go to: `path` if given; else, in Jupyter, figures/ in the working
    directory (a notebook run must not overwrite the committed figures); else the repository's
    figures/ (figures/ in the working directory if tinyflow is not run from a checkout)."""
    if path is not None:
        directory = Path(path)
    elif in_jupyter():
        directory = Path.cwd() / "figures"
    else:
        root = Path(__file__).resolve().parents[1]
        directory = root / "figures" if (root / "chapters").is_dir() else Path.cwd() / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def savefig(fig, name, directory, measured=False):
    """Save `fig` as directory/name (PNG; directory/this_machine/name if `measured`, a plot of this
    run's timings), show it if in Jupyter, close it, and print where it went. Closing it keeps the
    notebook from showing it a second time at the end of the cell; returning nothing keeps a cell
    that ends here from also echoing the path."""
    path = Path(directory) / ("this_machine" if measured else "") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if in_jupyter():
        from IPython.display import display   # already loaded by the kernel
        display(fig)
    plt.close(fig)
    print(f"wrote {path}")


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

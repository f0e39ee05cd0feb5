"""Where figures go: a timing figure (measured=True) lands in this_machine/, which git ignores, so
running a chapter never shows a committed figure as modified."""
import subprocess
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tinyflow.plotting import savefig

ROOT = Path(__file__).resolve().parents[1]


def test_a_measured_figure_goes_to_this_machine(tmp_path):
    savefig(plt.figure(), "cost.png", tmp_path, measured=True)
    assert (tmp_path / "this_machine" / "cost.png").is_file() and not (tmp_path / "cost.png").exists()


def test_git_ignores_this_machines_figures():
    ignored = subprocess.run(["git", "check-ignore", "-q", "figures/this_machine/ch08_step_cost.png"], cwd=ROOT)
    assert ignored.returncode == 0

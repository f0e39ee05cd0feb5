"""Chapter 1 opened as a notebook: converted by jupytext and run in a Jupyter kernel (nbclient)
from a fresh working directory, in --quick mode. It shows each figure it saves once, inline, and
writes it to figures/ in that directory, never over the repository's committed figures/."""
import json
import os
import re
import sys

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from chapter_runner import CHAPTERS

CHAPTER = "ch01_change_of_variables.py"
FIGURES = ["ch01_affine_uniform.png", "ch01_lognormal.png", "ch01_affine_fit.png"]
COMMITTED = CHAPTERS.parent / "figures"


def this_python_kernel(directory):
    """A kernel manager for a kernel run by this interpreter. The "python3" kernel Jupyter finds
    first may be one a user registered for another Python, without tinyflow installed."""
    spec = directory / "this-python"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "this python", "language": "python"}))
    return KernelManager(kernel_name="this-python", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(directory)]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Execute the chapter as a notebook in a temporary directory: (notebook, directory, the
    modification times of the committed figures before the run)."""
    tmp_path = tmp_path_factory.mktemp("notebook")
    committed = {name: (COMMITTED / name).stat().st_mtime_ns for name in FIGURES if (COMMITTED / name).exists()}
    notebook = jupytext.read(CHAPTERS / CHAPTER)
    # a notebook has no command line: the chapter reads sys.argv, so a first cell adds the flag
    notebook.cells.insert(0, nbformat.v4.new_code_cell('import sys\nsys.argv.append("--quick")'))
    client = NotebookClient(notebook, km=this_python_kernel(tmp_path / "kernels"), timeout=600,
                            startup_timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=dict(os.environ))   # raises CellExecutionError if a cell fails
    return notebook, tmp_path, committed


def outputs(notebook, output_type):
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if output.output_type == output_type]


def printed(notebook):
    return "".join(output.text for output in outputs(notebook, "stream") if output.name == "stdout")


def test_no_cell_raises(run):
    assert outputs(run[0], "error") == []


def test_each_saved_figure_is_shown_once_inline(run):
    shown = [output for output in outputs(run[0], "display_data") if "image/png" in output.data]
    saved = re.findall(r"^wrote .+\.png$", printed(run[0]), flags=re.MULTILINE)
    assert len(saved) == len(FIGURES)
    assert len(shown) == len(saved)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_written_to_the_working_directory(run, name):
    notebook, tmp_path, _ = run
    assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert f"wrote {tmp_path / 'figures' / name}\n" in printed(notebook)


def test_committed_figures_are_not_overwritten(run):
    committed = run[2]
    assert committed == {name: (COMMITTED / name).stat().st_mtime_ns for name in committed}

"""Chapters use tinyflow's public names only: what `tinyflow` exports, plus the modules whose
job is to serve chapters (plotting, layer_plots, energies, benchmark, datasets). A chapter that reaches into
tinyflow.train or tinyflow.made would teach students to lean on names that may change."""
import ast
from pathlib import Path

import pytest

import tinyflow

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("ch[0-9][0-9]_*.py"))
PUBLIC_MODULES = {"tinyflow.plotting", "tinyflow.layer_plots", "tinyflow.energies", "tinyflow.benchmark",
                  "tinyflow.tape", "tinyflow.datasets"}


def private_uses(source):
    """(line, what) for each import from, or attribute of, a tinyflow module that is not public."""
    tree = ast.parse(source)
    aliases = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == "tinyflow"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinyflow."):
            if node.module not in PUBLIC_MODULES:
                found += [(node.lineno, f"from {node.module} import {alias.name}") for alias in node.names
                          if alias.name not in tinyflow.__all__]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id in aliases):
            module = f"tinyflow.{node.value.attr}"
            if module not in PUBLIC_MODULES:
                found.append((node.lineno, f"{node.value.value.id}.{node.value.attr}.{node.attr}"))
    return found


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_imports_public_names_only(chapter):
    assert private_uses(chapter.read_text()) == []


def test_the_check_finds_a_private_import():
    source = "import tinyflow as tf\nfrom tinyflow.train import adam_update, fit, _leaf\nx = tf.train.fit\n"
    assert private_uses(source) == [(2, "from tinyflow.train import _leaf"), (3, "tf.train.fit")]

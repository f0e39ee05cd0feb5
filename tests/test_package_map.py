"""The package docstring's map names every module once, so a student can tell layers from
building blocks from tooling; and every exported name exists."""
import re
from pathlib import Path

import tinyflow

MODULES = sorted(p.name for p in Path(tinyflow.__file__).parent.glob("*.py") if p.name != "__init__.py")


def test_the_map_names_every_module_exactly_once():
    named = re.findall(r"\b(\w+\.py)\b", tinyflow.__doc__)
    assert sorted(named) == MODULES


def test_every_exported_name_exists():
    assert [name for name in tinyflow.__all__ if not hasattr(tinyflow, name)] == []
    assert len(set(tinyflow.__all__)) == len(tinyflow.__all__)

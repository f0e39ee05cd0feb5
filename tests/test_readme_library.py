"""The README's library table lists every module of the package, so none is hidden from a reader."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_lists_every_module():
    readme = ROOT / "README.md"
    section = readme.read_text().split("## The library")[1].split("\n## ")[0]
    listed = set(re.findall(r"`(\w+\.py)`", section))
    modules = {p.name for p in (ROOT / "tinyflow").glob("*.py") if p.name != "__init__.py"}
    assert modules - listed == set()

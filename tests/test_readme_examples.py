"""The README's self-contained examples (the Python blocks that start with their own imports) run
as printed, and the conditional example learns what its comment says."""
import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if block.startswith("import numpy")]


@pytest.mark.parametrize("block", [b for b in BLOCKS if "context=0.5" not in b])
def test_a_self_contained_readme_example_runs(block):
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, "README.md", "exec"), namespace)


def test_the_conditional_example_learns_its_target():
    block = next(block for block in BLOCKS if "context=0.5" in block)
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, "README.md", "exec"), namespace)
    x_new = namespace["x_new"]
    # N(sin 1.5, 0.5^2) at c = 0.5; 10,000 draws: standard errors 0.005 (mean), 0.0035 (std), plus the fit's error
    assert abs(x_new.mean() - 0.997) < 0.05 and abs(x_new.std() - 0.5) < 0.03

"""tinyflow.claims prints a result beside the range the text states, marks it when outside, and
never judges a --quick run; chapters/seeds.py reads those lines back and tabulates them."""
import importlib.util
import sys
from pathlib import Path

import pytest

import tinyflow as tf

SEEDS_SCRIPT = Path(__file__).resolve().parents[1] / "chapters" / "seeds.py"


def load_seeds_script():
    spec = importlib.util.spec_from_file_location("seeds", SEEDS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_value_inside_the_range_is_printed_beside_it(capsys):
    line = tf.claims()("paired KL after 1100 steps", 0.01834, 0.016, 0.024)
    assert line == "paired KL after 1100 steps: 0.0183 (text: 0.0160 to 0.0240 over seeds 0-4)"
    assert capsys.readouterr().out == line + "\n"


@pytest.mark.parametrize("value", [0.0453, 0.0101, float("nan")])
def test_a_value_outside_the_range_is_marked(value):
    assert tf.claims()("KL", value, 0.016, 0.024).endswith("<-- outside the text's range")


def test_the_range_is_judged_at_the_printed_precision():
    """0.02404 prints as 0.0240, the range's end, so it is inside: reader and check agree."""
    assert "outside" not in tf.claims()("KL", 0.02404, 0.016, 0.024)
    assert "outside" in tf.claims()("KL", 0.02406, 0.016, 0.024)


def test_percentages_print_and_compare_as_percentages():
    claim = tf.claims()
    assert claim("ESS", 0.4123, 0.30, 0.50, fmt=".1%") == "ESS: 41.2% (text: 30.0% to 50.0% over seeds 0-4)"
    assert "outside" in claim("ESS", 0.5123, 0.30, 0.50, fmt=".1%")


def test_a_quick_run_is_never_judged():
    line = tf.claims(quick=True)("KL", 3.0, 0.016, 0.024)
    assert "full run: 0.0160 to 0.0240" in line and "outside" not in line


def test_a_range_upside_down_is_refused():
    with pytest.raises(ValueError, match="low <= high"):
        tf.claims()("KL", 0.02, 0.03, 0.01)


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("value, fmt", [(0.01834, ".4f"), (-1.25, ".3f"), (0.4123, ".1%"), (12.0, ".0f")])
def test_the_seeds_script_reads_a_claim_line_back(value, fmt, quick):
    seeds = load_seeds_script()
    line = tf.claims(quick)("ESS of U2 (K = 8)", value, -2.0, 20.0, fmt=fmt)
    match = seeds.CLAIM.match(line)
    assert match and match["label"] == "ESS of U2 (K = 8)"
    assert seeds.number(match["value"]) == pytest.approx(value, abs=0.51 * 10 ** -int(fmt[1]) * (
        0.01 if fmt.endswith("%") else 1))
    assert (seeds.number(match["low"]), seeds.number(match["high"])) == (-2.0, 20.0)


def test_the_seeds_script_parses_seed_lists():
    seeds = load_seeds_script()
    assert seeds.seed_list("0-4") == [0, 1, 2, 3, 4]
    assert seeds.seed_list("0,2,7-8") == [0, 2, 7, 8]


def test_the_seeds_script_tabulates_runs_and_flags_a_range_that_misses_one(tmp_path, capsys):
    seeds = load_seeds_script()
    runs = {"s0/on": ({"KL": (0.018, 0.016, 0.024, "0.0180")}, 30.0),
            "s0/off": ({"KL": (0.031, 0.016, 0.024, "0.0310")}, 31.0)}
    rows = seeds.tabulate(Path("ch05_x.py"), runs)
    assert rows == [{"claim": "KL", "values": {"s0/on": 0.018, "s0/off": 0.031}, "min": 0.018, "max": 0.031,
                     "text": [0.016, 0.024], "covered": False}]
    assert "the text does not cover every run" in capsys.readouterr().out

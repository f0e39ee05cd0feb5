"""tinyflow.claims prints a result beside what the text claims about it (a bound, a range, an
exact identity or a frequency), flags it only when it falls on the wrong side, never judges a
--quick run, and parses its own lines back; chapters/seeds.py tabulates and checks those lines."""
import importlib.util
import sys
from pathlib import Path

import pytest

import tinyflow as tf
from tinyflow.claims import parse

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def load_seeds_script():
    sys.path.insert(0, str(CHAPTERS))          # seeds.py imports run_all.py beside it, as a script does
    try:
        spec = importlib.util.spec_from_file_location("seeds", CHAPTERS / "seeds.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CHAPTERS))
    return module


def test_a_bound_prints_the_value_beside_it(capsys):
    line = tf.claims().bound("paired KL after 1100 steps", 0.01234, at_most=0.016)
    assert line == "paired KL after 1100 steps: 0.0123 (text: at most 0.0160)"
    assert capsys.readouterr().out == line + "\n"


@pytest.mark.parametrize("value", [0.0, 1e-9, 0.0159])
def test_a_value_on_the_good_side_of_an_upper_bound_is_never_flagged(value):
    assert "<--" not in tf.claims().bound("KL", value, at_most=0.016)


@pytest.mark.parametrize("value", [0.0161, 15_700.0, float("nan"), float("inf")])
def test_a_value_beyond_an_upper_bound_is_flagged(value):
    assert tf.claims().bound("KL", value, at_most=0.016).endswith("<-- beyond the text's bound")


def test_a_lower_bound_flags_only_values_below_it():
    claim = tf.claims()
    assert claim.bound("ESS", 1.0, at_least=0.9, fmt=".1%") == "ESS: 100.0% (text: at least 90.0%)"
    assert "<--" in claim.bound("ESS", 0.881, at_least=0.9, fmt=".1%")


def test_a_bound_is_judged_at_the_printed_precision():
    """0.01604 prints as 0.0160, the bound itself, so it is kept: reader and check agree."""
    assert "<--" not in tf.claims().bound("KL", 0.01604, at_most=0.016)
    assert "<--" in tf.claims().bound("KL", 0.01606, at_most=0.016)


@pytest.mark.parametrize("sides", [{}, {"at_most": 1.0, "at_least": 0.0}])
def test_a_bound_needs_exactly_one_side(sides):
    with pytest.raises(ValueError, match="exactly one of at_most= and at_least="):
        tf.claims().bound("KL", 0.5, **sides)


def test_a_range_flags_values_on_either_side():
    claim = tf.claims()
    assert claim.range("share", 0.55, 0.5, 0.6, fmt=".2f") == "share: 0.55 (text: 0.50 to 0.60)"
    assert claim.range("share", 0.45, 0.5, 0.6, fmt=".2f").endswith("<-- outside the text's range")
    assert claim.range("share", 0.65, 0.5, 0.6, fmt=".2f").endswith("<-- outside the text's range")


def test_a_range_upside_down_is_refused():
    with pytest.raises(ValueError, match="low <= high"):
        tf.claims().range("share", 0.5, 0.6, 0.4)


def test_an_exact_claim_states_its_tolerance():
    claim = tf.claims()
    assert claim.exact("round trip", 3.1e-15, 0, 1e-12) == "round trip: 3.1e-15 (text: 0 within 1e-12)"
    assert claim.exact("round trip", 2e-12, 0, 1e-12).endswith("<-- beyond the text's tolerance")
    with pytest.raises(ValueError, match="tolerance"):
        claim.exact("round trip", 0.0, 0, -1.0)


def test_a_frequency_says_yes_or_counts_the_runs_like_this_one():
    claim = tf.claims()
    assert (claim.frequency("early stopping lowers the KL", True, 19, 20)
            == "early stopping lowers the KL: on 19 of 20 runs; this run: yes")
    assert (claim.frequency("early stopping lowers the KL", False, 19, 20)
            == "early stopping lowers the KL: on 19 of 20 runs; this run: no (as on 1 of 20 runs)")


@pytest.mark.parametrize("runs, of", [(21, 20), (-1, 20), (1.5, 20), (0, 0)])
def test_a_frequency_needs_whole_numbers_of_runs(runs, of):
    with pytest.raises(ValueError, match="whole numbers"):
        tf.claims().frequency("lesson", True, runs, of)


def test_a_quick_run_is_never_judged():
    claim = tf.claims(quick=True)
    line = claim.bound("KL", 3.0, at_most=0.016)
    assert line == "KL: 3.0000 (text, full run: at most 0.0160; a --quick run is not compared)"
    assert "<--" not in claim.range("share", 9.0, 0.5, 0.6) + claim.exact("error", 1.0, 0, 1e-12)
    assert claim.frequency("lesson", False, 20, 20) == "lesson: on 20 of 20 runs; this run (--quick, not compared): no"


@pytest.mark.parametrize("quick", [False, True])
def test_every_kind_parses_back(quick):
    claim = tf.claims(quick)
    bound = parse(claim.bound("ESS of U2 (K = 8)", 0.4123, at_least=0.3, fmt=".1%"))
    assert bound == {"label": "ESS of U2 (K = 8)", "kind": "bound", "value": pytest.approx(0.412), "shown": "41.2%",
                     "at_least": pytest.approx(0.3), "quick": quick, "flagged": False}
    assert parse(claim.bound("KL: 1 vs 2", 5.0, at_most=0.02))["flagged"] is not quick
    found = parse(claim.range("slope", -1.25, -2.0, 20.0, fmt=".3f"))
    assert (found["kind"], found["value"], found["low"], found["high"]) == ("range", -1.25, -2.0, 20.0)
    found = parse(claim.exact("error", 3e-15, 0, 1e-12))
    assert (found["kind"], found["value"], found["expected"], found["tol"]) == ("exact", 3e-15, 0.0, 1e-12)
    found = parse(claim.frequency("lesson", False, 19, 20))
    assert (found["kind"], found["happened"], found["runs"], found["of"], found["quick"]) == ("frequency", False,
                                                                                           19, 20, quick)


def test_a_line_that_is_not_a_claim_parses_to_none():
    assert parse("trained 1100 steps in 21.3 s (19 ms/step)") is None
    assert parse("after 1100 steps: NLL 1.6240, entropy 1.6121, gap 0.0119") is None


def test_the_rule_gives_a_margin_beyond_the_worst_run():
    seeds = load_seeds_script()
    kl = {"kind": "bound", "at_most": 1.0}
    assert seeds.suggest(kl, [0.0119, 0.0125, 0.0139]) == ("at most 0.015", True)     # 0.0139 + 0.001 -> 0.015
    ess = {"kind": "bound", "at_least": 0.5}
    assert seeds.suggest(ess, [0.96, 0.99, 1.0]) == ("at least 0.94", True)            # 0.96 - 0.02
    assert seeds.suggest(ess, [0.04, 0.93]) == ("at least -0.5", False)                 # swings: not a number
    share = {"kind": "range", "low": 0, "high": 1}
    assert seeds.suggest(share, [0.52, 0.62]) == ("0.49 to 0.65", True)               # 0.025 beyond each end
    assert seeds.suggest(share, [2.31, 2.51]) == ("2.26 to 2.56", True)


def test_the_seeds_script_parses_seed_lists():
    seeds = load_seeds_script()
    assert seeds.seed_list("0-4") == [0, 1, 2, 3, 4]
    assert seeds.seed_list("0,2,7-8") == [0, 2, 7, 8]


def test_the_check_counts_flagged_values_and_failed_frequencies(capsys):
    seeds = load_seeds_script()
    claim = tf.claims()
    runs = {}
    for seed, (kl, lesson) in enumerate([(0.012, True), (0.031, True), (0.013, False), (0.011, False),
                                         (0.012, False)]):
        lines = [claim.bound("KL", kl, at_most=0.016), claim.frequency("lesson", lesson, 19, 20)]
        runs[f"s{seed}"] = {"claims": {c["label"]: c for c in map(parse, lines)}, "wall": 1.0, "cpu": 1.0}
    printed, flagged, failures = seeds.tabulate("ch05_x.py", runs)
    assert (printed, flagged, failures) == (5, 1, 1)     # 3 "no" of 5 at a stated 1 in 20: chance 0.1%
    out = capsys.readouterr().out
    assert "1 outside" in out and "<-- FAILS" in out


def test_a_rare_no_is_what_a_stated_frequency_allows():
    seeds = load_seeds_script()
    assert seeds.binomial_tail(1, 10, 1 / 40) > 0.2           # "on 20 of 20": one no in 10 runs is no surprise
    assert seeds.binomial_tail(4, 10, 1 / 20) < 0.01          # "on 19 of 20": four in 10 is

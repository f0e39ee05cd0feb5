"""Chapter 8 in --quick mode: the hand-written VJP is right (against autograd and finite
differences), the three rungs (textbook, readable primitives, fused coupling) compute the same
log_prob and gradient, each rung records exactly the nodes the text counts (per block + the rest),
every claim is an identity or a count (exact) or a bound, and the figure is written. Timings are
printed as an illustration, never claimed or asserted."""
import re

import pytest

from chapter_runner import claim_lines, run_chapter


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ch08")
    return run_chapter("ch08_backprop_by_hand.py", tmp_path), tmp_path


def number(pattern, stdout):
    match = re.search(pattern, stdout)
    assert match, f"no line matching {pattern!r} in:\n{stdout}"
    return float(match.group(1))


def test_hand_written_vjp_matches_autograd(run):
    stdout, _ = run
    assert number(r"my_dense_relu vs autograd, .*: max \|difference\| over dx, dW, db = (\S+)", stdout) <= 1e-12


def test_hand_written_vjp_matches_finite_differences(run):
    stdout, _ = run
    assert number(r"my_dense_relu vs central differences .*: max relative error (\S+)", stdout) <= 1e-6


def test_hand_written_primitive_is_one_node_where_the_expression_is_three(run):
    stdout, _ = run
    assert number(r"plain expression\s+(\d+) node\(s\)", stdout) == 3
    assert number(r"my_dense_relu\s+(\d+) node\(s\)", stdout) == 1


@pytest.mark.parametrize("rung", ["primitives", "fused"])
def test_every_rung_agrees_with_the_textbook_on_log_prob_and_gradient(run, rung):
    stdout, _ = run
    pattern = (rf"textbook vs {rung}: log_prob max relative difference (\S+), "
               r"forward-KL gradient max relative difference (\S+)")
    match = re.search(pattern, stdout)
    assert match, stdout
    assert float(match.group(1)) <= 1e-10 and float(match.group(2)) <= 1e-10


def test_each_rung_records_fewer_nodes(run):
    stdout, _ = run
    textbook, primitives, fused = (number(rf"{name}\s+(\d+) nodes per training step", stdout)
                                   for name in ("textbook", "primitives", "fused"))
    assert fused < primitives < textbook


def test_step_tape_reads_eight_arrays_per_block_or_three_when_fused(run):
    stdout, _ = run
    match = re.search(r"parameter reads \(_leaf nodes\) per step: textbook (\d+) = (\d+) x 8, "
                      r"primitives (\d+) = (\d+) x 8, fused (\d+) = (\d+) x 3", stdout)
    assert match, stdout
    textbook, blocks, primitives, blocks_2, fused, blocks_3 = map(int, match.groups())
    assert blocks == blocks_2 == blocks_3 == 4                                 # --quick
    assert textbook == primitives == 8 * blocks and fused == 3 * blocks


def test_figure_is_written(run):
    _, tmp_path = run
    assert (tmp_path / "figures" / "this_machine" / "ch08_step_cost.png").stat().st_size > 10_000


def test_claims_are_counts_identities_and_memory_bounds(run):
    stdout, _ = run
    claims = {claim["label"]: claim for claim in claim_lines(stdout)}
    exact = [label for label, claim in claims.items() if claim["kind"] == "exact"]
    assert len(exact) == 12 and all(claims[label]["quick"] and not claims[label]["flagged"] for label in exact)
    # 4 blocks in --quick; 16 in a full run: 792, 361 and 137
    for name, per_block, rest in [("textbook", 49, 8), ("primitives", 22, 9), ("fused", 8, 9)]:
        label = f"nodes per training step, {name}"
        assert claims[label]["expected"] == claims[label]["value"] == per_block * 4 + rest
    memory = {f"peak memory of a training step, {name} / textbook" for name in ("primitives", "fused")}
    assert all(claims[label]["kind"] == "bound" and claims[label]["at_most"] < 1 for label in memory)
    # the two page-fault bounds come from fresh processes that only a full run starts
    assert set(claims) - set(exact) == memory
    assert not any("time" in label or " ms" in label for label in claims)           # no timing claims


def test_exact_claims_hold_in_a_quick_run(run):
    stdout, _ = run
    for claim in claim_lines(stdout):
        if claim["kind"] == "exact":
            assert abs(claim["value"] - claim["expected"]) <= claim["tol"], claim

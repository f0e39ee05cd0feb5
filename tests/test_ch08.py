"""Chapter 8 in --quick mode: the hand-written VJP is right (against autograd and finite
differences), the textbook and primitive models compute the same log_prob and gradient, the
primitives record fewer nodes, every claim is an identity or a count (exact) or a bound, and the
figure is written. Timings are printed as an illustration, never claimed or asserted."""
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


def test_textbook_and_primitive_models_agree_on_log_prob(run):
    stdout, _ = run
    assert number(r"textbook vs primitives: log_prob max relative difference (\S+)", stdout) <= 1e-10


def test_textbook_and_primitive_models_agree_on_gradient(run):
    stdout, _ = run
    assert number(r"textbook vs primitives: forward-KL gradient max relative difference (\S+)", stdout) <= 1e-10


def test_primitive_model_records_fewer_nodes(run):
    stdout, _ = run
    textbook = number(r"textbook\s+(\d+) nodes per training step", stdout)
    primitives = number(r"primitives\s+(\d+) nodes per training step", stdout)
    assert primitives < textbook


def test_step_tape_is_the_model_plus_one_leaf_per_parameter_array(run):
    stdout, _ = run
    match = re.search(r"the other (\d+) nodes of each step are the input theta and one _leaf per parameter array: "
                      r"(\d+) x 6 in the MLPs, (\d+) x 2 in the LUs", stdout)
    assert match, stdout
    others, blocks, blocks_again = map(int, match.groups())
    assert blocks == blocks_again and others == 1 + 6 * blocks + 2 * blocks


def test_figure_is_written(run):
    _, tmp_path = run
    assert (tmp_path / "figures" / "this_machine" / "ch08_step_cost.png").stat().st_size > 10_000


def test_claims_are_counts_identities_and_one_memory_bound(run):
    stdout, _ = run
    claims = {claim["label"]: claim for claim in claim_lines(stdout)}
    exact = [label for label, claim in claims.items() if claim["kind"] == "exact"]
    assert len(exact) == 9 and all(claims[label]["quick"] and not claims[label]["flagged"] for label in exact)
    assert claims["nodes per training step, textbook"]["expected"] == 49 * 4 + 8      # 4 blocks in --quick
    assert claims["nodes per training step, primitives"]["expected"] == 26 * 4 + 9    # 16 blocks: 792 and 425
    assert claims["nodes per training step, textbook"]["value"] == 204
    assert claims["peak memory of a training step, primitives / textbook"]["at_most"] == 0.6
    # the two page-fault bounds come from fresh processes that only a full run starts
    assert set(claims) - set(exact) == {"peak memory of a training step, primitives / textbook"}
    assert not any("time" in label or " ms" in label for label in claims)           # no timing claims


def test_exact_claims_hold_in_a_quick_run(run):
    stdout, _ = run
    for claim in claim_lines(stdout):
        if claim["kind"] == "exact":
            assert abs(claim["value"] - claim["expected"]) <= claim["tol"], claim

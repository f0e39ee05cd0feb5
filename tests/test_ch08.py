"""Chapter 8 in --quick mode: the hand-written VJP is right (against autograd and finite
differences), the textbook and primitive models compute the same log_prob and gradient, the
primitives record fewer nodes, and the figure is written. Timings are printed, never asserted."""
import re

import pytest

from chapter_runner import run_chapter


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
    assert (tmp_path / "figures" / "ch08_step_cost.png").stat().st_size > 10_000

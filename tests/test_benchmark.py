"""The benchmark keeps running: `python -m tinyflow.benchmark --quick --json PATH` prints its
tables and writes the same numbers as JSON. Times are never asserted (they depend on the machine)."""
import json
import math
import subprocess
import sys

import pytest

from tinyflow.benchmark import OPERATIONS, chapter8_nodes, per_operation


def test_quick_benchmark_prints_tables_and_writes_matching_json(tmp_path):
    path = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "tinyflow.benchmark", "--quick", "--json", str(path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(path.read_text())
    names = [row["model"] for row in results["training_step"]]
    assert [name.split()[0] for name in names] == ["IAF", "2", "RealNVP"]           # the three tutorial models
    assert {(row["stack"], row["op"]) for row in results["scaling"]} == {
        (stack, op) for stack in ("coupling", "IAF", "MAF") for op in ("log_prob", "sample")}
    for row in results["training_step"] + results["scaling"]:
        assert all(math.isfinite(row[key]) for key in ("ms", "min_ms", "cpu_ms"))
        assert f"{row['batch']:6d} {row['ms']:9.2f}" in result.stdout      # the table shows the JSON's numbers
    assert all(row["MiB"] > 0 for row in results["peak_memory"])           # tracemalloc saw the arrays
    side_by_side = {comparison["key"]: comparison for comparison in results["side_by_side"]}
    assert list(side_by_side) == ["spline", "conditional 2D", "conditional 10D", "fused", "ch03", "ch08", "ch10", "ch09",
                                  "ch13 sample", "ch13 density", "ch13 step"]
    for comparison in side_by_side.values():                    # jobs timed in turns, ratios of CPU medians
        reference, *others = comparison["rows"]
        assert "ratio" not in reference and comparison["ratio"] == others[0]["ratio"]
        assert all(row["ratio"] == row["cpu_ms"] / reference["cpu_ms"] > 0 for row in others)
        assert comparison["title"] in result.stdout
        assert all(f"ratio {row['ratio']:.2f}" in result.stdout for row in others)
    assert [row["job"] for row in side_by_side["ch03"]["rows"]] == ["tanh", "relu"]
    assert [row["job"] for row in side_by_side["fused"]["rows"]] == ["fused", "readable"]      # fused / fused=False
    assert [row["job"] for row in side_by_side["ch08"]["rows"]] == ["fused", "primitives", "textbook"]  # three rungs
    assert [row["job"] for row in side_by_side["ch13 step"]["rows"]] == ["flow matching", "max. likelihood",
                                                                         "drawing FM batch"]
    assert all(len(comparison["rows"]) == 2 for key, comparison in side_by_side.items()
               if key not in ("ch08", "ch13 step"))
    assert "nodes per training step: textbook 106, readable primitives 53, fused 25" in result.stdout
    anatomy = results["step_anatomy"]                               # chapter 8: what bounds the fused step
    assert anatomy["nodes"] == 8 * 2 + 9 and "where the time of one fused step goes" in result.stdout
    assert all(math.isfinite(anatomy[part]) and anatomy[part] > 0
               for part in ("step", "loss and gradient", "arithmetic alone", "matrix products alone"))
    assert [row["path"] for row in results["fresh_process"]] == ["fit", "nested"]  # both paths a student takes
    assert all(math.isfinite(row["ms"]) and f"median {row['ms']:7.2f} ms" in result.stdout
               for row in results["fresh_process"])


def test_chapter8_node_counts_are_the_chapters():
    # exact counts, the same on every machine: chapter 8's three rungs, per block + the rest,
    # 49 B + 8 (textbook), 22 B + 9 (readable primitives, fused=False), 8 B + 9 (fused)
    for quick, blocks in [(True, 2), (False, 16)]:
        assert chapter8_nodes(quick=quick) == {"textbook": 49 * blocks + 8, "primitives": 22 * blocks + 9,
                                               "fused": 8 * blocks + 9}
    assert chapter8_nodes(quick=False) == {"textbook": 792, "primitives": 361, "fused": 137}


def test_per_operation_rows_are_per_operation_medians():
    rows = per_operation(quick=True, repeats=2, warmup=1)
    assert [row["op"] for row in rows] == list(OPERATIONS)
    assert all(row["ratio"] == pytest.approx(row["autograd_us"] / row["numpy_us"]) and row["ratio"] > 0 for row in rows)

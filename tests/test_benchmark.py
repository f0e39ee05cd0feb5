"""The benchmark keeps running: `python -m tinyflow.benchmark --quick --json PATH` prints its
tables and writes the same numbers as JSON. Times are never asserted (they depend on the machine)."""
import json
import math
import subprocess
import sys


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
    spline = results["spline_step"]
    assert [row["model"].split()[2] for row in spline] == ["affine", "spline"]       # equal-size pair, one ratio
    assert spline[1]["ratio"] == spline[1]["ms"] / spline[0]["ms"] and f"{spline[1]['ratio']:.2f}x" in result.stdout
    conditional = results["conditional_step"]                  # pairs: without, then with a context
    assert all("context" not in plain["model"] and "context" in with_context["model"]
               and with_context["ratio"] == with_context["ms"] / plain["ms"] and f"{with_context['ratio']:.2f}x" in result.stdout
               for plain, with_context in zip(conditional[::2], conditional[1::2])) and len(conditional) == 4
    assert [row["path"] for row in results["fresh_process"]] == ["fit", "nested"]  # both paths a student takes
    assert all(math.isfinite(row["ms"]) and f"median {row['ms']:7.2f} ms" in result.stdout
               for row in results["fresh_process"])

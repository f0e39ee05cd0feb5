"""Run a chapter script as a student would (a subprocess, from another working directory),
in --quick mode, writing figures to a temporary directory; return what it printed. And the
patterns the chapter tests read its output with: a number, a claim line, a report line."""
import re
import subprocess
import sys
from pathlib import Path

from tinyflow.claims import parse

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NUMBER = r"([-+]?[\d.]+(?:e[-+]?\d+)?)"          # one printed number, captured: 0.0123, -4, 1.2e-05


def claim_lines(text):
    """Every claim line a chapter printed, parsed by tinyflow.claims.parse: {"label", "kind", ...}."""
    return [claim for claim in map(parse, text.splitlines()) if claim]


def run_chapter(name, tmp_path, *extra):
    """Run chapters/<name> --quick --figures-dir tmp_path/figures from tmp_path; return stdout.
    Fails the test with the chapter's stderr if it exits non-zero."""
    figures = tmp_path / "figures"
    result = subprocess.run([sys.executable, str(CHAPTERS / name), "--quick", "--figures-dir", str(figures), *extra],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


# the line tinyflow.format_report prints: "<label>: NLL .., entropy .., gap .., KL = ... +- .. (n = ..)"
REPORT = (r"{}: NLL ([\d.-]+), entropy ([\d.-]+), gap ([\d.-]+), "
          r"KL = mean\(log p - log q\) = ([\d.-]+) \+- ([\d.]+) \(n = (\d+)\)")


def parse_report(label, text):
    """The numbers of the format_report line labelled `label` (a plain string) in `text`."""
    match = re.search(REPORT.format(re.escape(label)), text)
    assert match, f"no report line for {label!r} in:\n{text}"
    nll, entropy, gap, kl, kl_se, n = match.groups()
    return {"nll": float(nll), "entropy": float(entropy), "gap": float(gap), "kl": float(kl),
            "kl_se": float(kl_se), "n": int(n)}


def box_check_line(prefix, text):
    """(share, mass, chi2, dof, chi2 / dof, z) from a line: `prefix` (a regex) + tinyflow.format_box_check."""
    return numbers(prefix + rf"{NUMBER} of the samples in the window \(the density's mass there "
                   rf"{NUMBER}\); chi\^2 = {NUMBER} on {NUMBER} degrees of freedom \(chi\^2 / dof = {NUMBER}\), "
                   rf"z = \+?{NUMBER}", text)


def numbers(pattern, text):
    """The groups of the first match of `pattern` in `text`, as floats; fails if none matches."""
    match = re.search(pattern, text)
    assert match, f"no line matching {pattern!r}"
    return [float(g) for g in match.groups()]

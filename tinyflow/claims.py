"""A chapter's numbers beside the range its text states.

A training run turns a last-bit rounding difference (another CPU, another numpy build) into
another trajectory, so a trained result is a range, not a number: the text states the range
measured over seeds 0-4 (`python chapters/seeds.py chNN` re-measures it), and every run prints
its own value beside that range, marked when it falls outside:

    paired KL after 1100 steps: 0.0183 (text: 0.016 to 0.024 over seeds 0-4)
    paired KL after 1100 steps: 0.0453 (text: 0.016 to 0.024 over seeds 0-4)  <-- outside the text's range

A --quick run trains too little to be compared, so it prints the range without judging.
chapters/seeds.py reads these lines back; keep the format in step with its CLAIM pattern.
"""
import math


def claims(quick=False):
    """Return claim(label, value, low, high, fmt=".4f") -> the printed line, for one chapter run."""
    def claim(label, value, low, high, fmt=".4f"):
        value, low, high = float(value), float(low), float(high)
        if not low <= high:
            raise ValueError(f"claim {label!r}: the range needs low <= high, got {low} and {high}")
        text = f"{low:{fmt}} to {high:{fmt}} over seeds 0-4"
        if quick:
            line = f"{label}: {value:{fmt}} (text, full run: {text}; a --quick run is not compared)"
        else:
            line = f"{label}: {value:{fmt}} (text: {text})"
            if not _shown(low, fmt) <= _shown(value, fmt) <= _shown(high, fmt):   # NaN: outside
                line += "  <-- outside the text's range"
        print(line)
        return line
    return claim


def _shown(value, fmt):
    """The number as printed (".4f", ".1%", ...), so a value that prints as the range's end is
    inside the range."""
    if not math.isfinite(value):
        return value
    text = format(value, fmt)
    return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)

"""A chapter's numbers beside what its text states about them, by kind of claim.

Another CPU or numpy build rounds the last bit of exp and log differently, and training turns
that bit into another trajectory: a student's run is, in effect, a new seed. So a chapter never
states "the" value of a trained result; it states a claim that a new run keeps, and every run
prints its own value beside it. Four kinds, by what the quantity is:

    bound      one side is better (a KL, an error, an ESS, bits/dim):  "at most U" / "at least L"
    range      descriptive, no better side (a share, a slope):          "L to U"
    frequency  a qualitative lesson:                                   "on 19 of 20 runs"
    exact      an identity, with its tolerance:                        "0 within 1e-12"

    paired KL after 1100 steps: 0.0125 (text: at most 0.016)
    ESS: 88.1% (text: at least 90.0%)  <-- beyond the text's bound
    early stopping lowers the KL: on 19 of 20 runs; this run: no (as on 1 of 20 runs)

A value on the good side of a bound is never flagged, and a frequency claim is never flagged:
a "no" is the rare run the text already counts. --quick runs train too little to be compared,
so they print the claim without judging.

How the numbers are set (chapters/seeds.py does the arithmetic). Each bound and range is set on
seeds 0-19, then checked on seeds 20-29, which were not used to set it. A bound exactly at the
worst of 20 runs is beaten by a new run about 1 time in 21, so it gets a margin:

    bound = worst + (worst - best) / 2        (on the bound's side; "worst - best" is the spread)
    range = [min - spread / 4, max + spread / 4]

each rounded outward at the first significant digit of its margin. For a normal quantity the
bound sits about 3.7 standard deviations from the mean (a new run beyond it: 1 in 10,000), and
it stays informative: for a positive quantity bounded above it is at most 1.5x the worst value.
A range is 1.5x the measured spread. Where the rule gives more than 1.5x the worst value (or
1.5x the spread), the quantity swings too much to state as a number: the recipe is fixed, or the lesson
becomes a frequency, or it is dropped.

chapters/seeds.py and chapters/run_all.py read these lines back with `parse`; keep the two in step.
"""
import math
import re


class Claims:
    """The claim printers of one chapter run: claims(quick).bound / .range / .frequency / .exact.
    Each prints its line and returns it."""

    def __init__(self, quick=False):
        self.quick = bool(quick)

    def bound(self, label, value, at_most=None, at_least=None, fmt=".4f"):
        """value <= at_most (or >= at_least): a quantity with a better side."""
        if (at_most is None) == (at_least is None):
            raise ValueError(f"claim {label!r}: give exactly one of at_most= and at_least=")
        limit = float(at_most if at_most is not None else at_least)
        value = float(value)
        side = "at most" if at_most is not None else "at least"
        shown, edge = _shown(value, fmt), _shown(limit, fmt)
        kept = shown <= edge if at_most is not None else shown >= edge       # NaN: not kept
        return self._line(label, format(value, fmt), f"{side} {limit:{fmt}}", kept, "beyond the text's bound")

    def range(self, label, value, low, high, fmt=".4f"):
        """low <= value <= high: a descriptive number with no better side."""
        value, low, high = float(value), float(low), float(high)
        if not low <= high:
            raise ValueError(f"claim {label!r}: the range needs low <= high, got {low} and {high}")
        kept = _shown(low, fmt) <= _shown(value, fmt) <= _shown(high, fmt)
        return self._line(label, format(value, fmt), f"{low:{fmt}} to {high:{fmt}}", kept,
                          "outside the text's range")

    def exact(self, label, value, expected, tol, fmt=".1e"):
        """|value - expected| <= tol: an identity that holds on every run, to rounding."""
        value, expected, tol = float(value), float(expected), float(tol)
        if not tol >= 0:
            raise ValueError(f"claim {label!r}: the tolerance must be >= 0, got {tol}")
        kept = abs(value - expected) <= tol
        return self._line(label, format(value, fmt), f"{expected:g} within {tol:g}", kept,
                          "beyond the text's tolerance")

    def frequency(self, label, happened, runs, of):
        """A lesson that held on `runs` of `of` measured runs; this run says yes or no. Never flagged."""
        if not (isinstance(runs, int) and isinstance(of, int) and 0 <= runs <= of and of >= 1):
            raise ValueError(f"claim {label!r}: need whole numbers 0 <= runs <= of, got {runs} of {of}")
        if self.quick:          # too little training to count as one of the runs
            line = f"{label}: on {runs} of {of} runs; this run (--quick, not compared): {'yes' if happened else 'no'}"
        else:
            line = f"{label}: on {runs} of {of} runs; this run: " + ("yes" if happened else f"no (as on {of - runs} of {of} runs)")
        print(line)
        return line

    def _line(self, label, value, text, kept, flag):
        if self.quick:
            line = f"{label}: {value} (text, full run: {text}; a --quick run is not compared)"
        else:
            line = f"{label}: {value} (text: {text})" + ("" if kept else f"  {FLAG} {flag}")
        print(line)
        return line


def claims(quick=False):
    """The claim printers for one chapter run (see Claims)."""
    return Claims(quick)


FLAG = "<--"
_NUMBER = r"\S+"
_VALUED = re.compile(rf"^(?P<label>.+?): (?P<value>{_NUMBER}) \(text(?P<quick>, full run)?: "
                     rf"(?:(?P<side>at most|at least) (?P<limit>{_NUMBER})"
                     rf"|(?P<expected>{_NUMBER}) within (?P<tol>{_NUMBER})"
                     rf"|(?P<low>{_NUMBER}) to (?P<high>{_NUMBER}))"
                     rf"(?:; a --quick run is not compared)?\)(?P<flagged>  {FLAG} .*)?$")
_FREQUENCY = re.compile(r"^(?P<label>.+?): on (?P<runs>\d+) of (?P<of>\d+) runs; "
                        r"this run(?P<quick> \(--quick, not compared\))?: (?P<answer>yes|no)")


def parse(line):
    """A claim line back to a dict, or None if the line is not one:
    {"label", "kind": "bound"/"range"/"exact"/"frequency", "quick": bool, "flagged": bool, and
     "value" (float), "shown" (str), "at_most"/"at_least" | "low", "high" | "expected", "tol" |
     "happened" (bool), "runs", "of"}."""
    match = _FREQUENCY.match(line)
    if match:
        return {"label": match["label"], "kind": "frequency", "quick": bool(match["quick"]), "flagged": False,
                "happened": match["answer"] == "yes", "runs": int(match["runs"]), "of": int(match["of"])}
    match = _VALUED.match(line)
    if not match:
        return None
    found = {"label": match["label"], "value": number(match["value"]), "shown": match["value"],
             "quick": bool(match["quick"]), "flagged": bool(match["flagged"])}
    if match["side"]:
        found.update(kind="bound", **{match["side"].replace(" ", "_"): number(match["limit"])})
    elif match["tol"]:
        found.update(kind="exact", expected=number(match["expected"]), tol=number(match["tol"]))
    else:
        found.update(kind="range", low=number(match["low"]), high=number(match["high"]))
    return found


def number(text):
    """A printed number back to a float ("0.0183", "41.2%", "nan", "1e-12")."""
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _shown(value, fmt):
    """The number as printed (".4f", ".1%", ...), so a value that prints as the limit is on it."""
    if not math.isfinite(value):
        return value
    return number(format(value, fmt))

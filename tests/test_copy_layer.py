"""A layer file copied into coursework works on its own, with only the files it names.

Every file a student may copy ends its module docstring with one line in this format:

    Copy with: coupling.py, affine.py, columns.py, linear.py, mlp.py, validate.py (and an empty __init__.py).

that is "Copy with: ", the file itself, then every other tinyflow file it imports, directly or
through another, in alphabetical order, all separated by ", ", then " (and an empty __init__.py).".
Nothing else is on that line and nothing follows it in the docstring. The files import each
other relatively (`from .affine import affine`), so they go into one folder, a package, beside
an empty __init__.py.

The tests copy exactly those files into a temporary package per file and import them in a
Python that cannot import tinyflow: started with -I -S (no site-packages, so no editable-install
hook), a sys.path of the standard library, numpy, autograd, threadpoolctl and the copies only, and
sys.modules["tinyflow"] = None set first, so any `import tinyflow` raises. In that Python the
copied check.py checks each copied layer against the contract, with parameters moved away from
init and points in every orthant. One subprocess does all of it, once, and reports in JSON; each
test below asserts one property of that report.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import autograd
import threadpoolctl
import numpy
import pytest

LIBRARY = Path(__file__).resolve().parent.parent / "tinyflow"
COPYABLE = ["elementwise", "leaky_relu", "coupling", "autoregressive", "permutation", "invert",
            "distributions", "flow", "check", "spline", "spline_coupling", "spline_autoregressive",
            "planar", "planar_backprop", "radial", "radial_backprop", "ode", "field_backprop", "continuous",
            "flow_matching", "fixed_point", "lipschitz", "residual", "residual_estimators", "amortised",
            "amortised_backprop", "bounds", "stack"]
COPY_LINE = re.compile(r"Copy with: (\w+\.py(?:, \w+\.py)*) \(and an empty __init__\.py\)\.")

# Each layer as built from the copies (the module named `m` is the copy of tinyflow/m.py), in D = 3.
LAYERS = {
    "Affine": "elementwise.Affine()",
    "Exp": "elementwise.Exp()",
    "LeakyReLU": "leaky_relu.LeakyReLU(0.3, learnable=True)",
    "AffineCoupling": "coupling.AffineCoupling([1, 0, 1], hidden=(8,))",
    "AffineAutoregressive": "autoregressive.AffineAutoregressive(hidden=(8,))",
    "Reverse": "permutation.Reverse()",
    "Permute": "permutation.Permute([2, 0, 1])",
    "LULinear": "permutation.LULinear(order=[1, 2, 0])",
    "Invert(AffineAutoregressive)": "invert.Invert(autoregressive.AffineAutoregressive(hidden=(8,)))",
    "RationalQuadraticSpline": "spline.RationalQuadraticSpline(num_bins=4, bound=2.0)",
    "SplineCoupling": "spline_coupling.SplineCoupling([1, 0, 1], hidden=(8,), num_bins=4, bound=2.0)",
    "SplineAutoregressive": "spline_autoregressive.SplineAutoregressive(hidden=(8,), num_bins=4, bound=2.0)",
    "Planar": "planar.Planar()",
    "Radial": "radial.Radial()",
    "Stack(Planar)": "stack.Stack(planar.Planar(), 3)",
    "InvertibleResidual": "residual.InvertibleResidual(hidden=(8,))",
}
ROUND_TRIP_TOL = 1e-8      # exact up to rounding (tests/test_layers.py says why not 1e-12)
AUTOGRAD_TOL = 1e-8        # log_det and autograd's Jacobian are both exact up to rounding
FINITE_DIFF_TOL = 1e-6     # central differences, h = 1e-5: O(h^2) truncation + O(eps/h) rounding

# Runs in the subprocess. Its first statement makes `import tinyflow` fail whatever is installed.
SCRIPT = r'''
import sys
sys.modules["tinyflow"] = None
import importlib, json

job = json.loads(sys.argv[1])
sys.path += [job["packages"], job["site"]]
report = {"finders": [type(f).__name__ for f in sys.meta_path if f.find_spec("tinyflow", None)]}
try:
    import tinyflow
    report["tinyflow_imports"] = True
except ImportError:
    report["tinyflow_imports"] = False

def load(package, module):
    """(the module, None) or (None, the error it raised on import)."""
    try:
        return importlib.import_module(f"{package}.{module}"), None
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"

copies, report["imports"], report["without"] = {}, {}, {}
for module in job["copyable"]:
    copy, error = load(f"coursework_{module}", module)
    report["imports"][module] = error or copy.__file__
    if copy:                                  # a copy that failed to import stays undefined below
        copies[module] = copy
    report["without"][module] = {dropped: load(f"coursework_{module}_without_{dropped}", module)[1]
                                 for dropped in job["listed"][module] if dropped != module}

import autograd.numpy as np
from autograd.misc import flatten

def attempt(compute):
    """compute()'s result, or the error it raised as a string: one broken copy spoils one entry."""
    try:
        return compute()
    except Exception as error:
        return f"{type(error).__name__}: {error}"

def build(expression):
    return eval(expression, dict(copies))

def moved(params, seed):
    """params + N(0, I) on every entry: at init most layers are the identity, log_det = 0."""
    if not params:
        return params
    theta, unflatten = flatten(params)
    return unflatten(theta + np.random.default_rng(seed).standard_normal(theta.shape))

signs = np.array([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)])
x = signs * np.random.default_rng(0).uniform(0.2, 2.0, signs.shape)   # every orthant, |x_ij| >= 0.2

def contract(layer, seed):
    """check_layer's errors from the copied check.py; tol=inf returns them all instead of raising."""
    params = moved(layer.init(np.random.default_rng(seed), 3), seed)
    return copies["check"].check_layer(layer, params, x, tol=float("inf"))

report["layers"] = {name: attempt(lambda: contract(build(expression), seed))
                    for seed, (name, expression) in enumerate(job["layers"].items())}

class WrongSign:
    """The copied Affine with the sign of its forward log-det flipped: a bug check_layer must see."""
    def __init__(self):
        self.layer = build("elementwise.Affine()")
    def init(self, rng, dim):
        return self.layer.init(rng, dim)
    def forward(self, params, x):
        y, log_det = self.layer.forward(params, x)
        return y, -log_det
    def inverse(self, params, y):
        return self.layer.inverse(params, y)

report["wrong_sign"] = attempt(lambda: contract(WrongSign(), seed=0))

def change_of_variables_error(seed):
    """max relative |log q(f(z)) - (log p_base(z) - log|det df/dz|)|, the Jacobian by central
    differences. LeakyReLU comes first, so its input is z, which keeps clear of its kink at 0."""
    layers = [build(expression) for expression in (
        "leaky_relu.LeakyReLU(0.3)", "coupling.AffineCoupling([0, 1, 1], hidden=(8,))",
        "permutation.LULinear()", "invert.Invert(autoregressive.AffineAutoregressive(hidden=(8,)))")]
    flow = copies["flow"].Flow(build("distributions.DiagNormal(3)"), layers)
    params, z = moved(flow.init(np.random.default_rng(seed)), seed), x
    jacobian = copies["check"].numerical_jacobian(lambda z: flow.forward(params, z)[0], z)
    expected = flow.base.log_prob(params["base"], z) - np.linalg.slogdet(jacobian)[1]
    got = flow.log_prob(params, flow.forward(params, z)[0])
    return float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))

report["flow"] = attempt(lambda: change_of_variables_error(seed=0))

report["tinyflow_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "tinyflow" and sys.modules[m])
print(json.dumps(report))
'''


def copy_line(module):
    """The files named on the module's Copy-with line, or None if its docstring does not end with one."""
    lines = (ast.get_docstring(ast.parse((LIBRARY / f"{module}.py").read_text())) or "").strip().splitlines()
    match = lines and COPY_LINE.fullmatch(lines[-1])
    return match.group(1).split(", ") if match else None


def relative_imports(module):
    """The tinyflow files the module imports: `from .x import y` and `from . import x`. An
    absolute `import tinyflow...` shows up as "tinyflow", which no copy can satisfy."""
    found = set()
    for node in ast.walk(ast.parse((LIBRARY / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.level > 1 or node.module.split(".")[0] == "tinyflow"):
            found.add("tinyflow")
        elif isinstance(node, ast.Import):
            found.update("tinyflow" for alias in node.names if alias.name.split(".")[0] == "tinyflow")
    return found


def import_closure(module):
    """The module and every tinyflow file it needs, directly or through another."""
    needed, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(relative_imports(name) if (LIBRARY / f"{name}.py").exists() else [])
    return needed


def make_package(directory, files):
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    for name in files:
        shutil.copy(LIBRARY / f"{name}.py", directory)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Build the packages (each copyable file with its listed files, and once more without each
    one of them), a site folder holding only numpy, autograd and threadpoolctl, run SCRIPT, return its report."""
    root = tmp_path_factory.mktemp("coursework")
    packages, site = root / "packages", root / "site"
    packages.mkdir()
    site.mkdir()
    for library in (numpy, autograd):
        folder = Path(library.__file__).parent
        for name in (folder.name, folder.name + ".libs"):     # numpy.libs: the wheel's OpenBLAS
            if (folder.parent / name).exists():
                (site / name).symlink_to(folder.parent / name)
    (site / "threadpoolctl.py").symlink_to(threadpoolctl.__file__)   # a runtime dependency: one module
    listed = {module: [name[:-len(".py")] for name in copy_line(module) or [f"{module}.py"]]
              for module in COPYABLE}
    for module, files in listed.items():
        make_package(packages / f"coursework_{module}", files)
        for dropped in files:
            if dropped != module:
                make_package(packages / f"coursework_{module}_without_{dropped}", set(files) - {dropped})
    job = {"packages": str(packages), "site": str(site), "copyable": COPYABLE, "listed": listed,
           "layers": LAYERS}
    run = subprocess.run([sys.executable, "-I", "-S", "-c", SCRIPT, json.dumps(job)], cwd=root,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return {**json.loads(run.stdout), "packages": str(packages)}


def layer_errors(report, name):
    """check_layer's errors for the copied layer, or a failure naming what the copy raised."""
    errors = report["layers"][name]
    if isinstance(errors, str):
        pytest.fail(f"{LAYERS[name]} raised in the copy: {errors} (a copy that did not import is undefined)")
    return errors


every_copyable = pytest.mark.parametrize("module", COPYABLE)
every_layer = pytest.mark.parametrize("name", LAYERS)


@every_copyable
def test_docstring_ends_with_a_copy_line(module):
    files = copy_line(module)
    assert files, (f"tinyflow/{module}.py's docstring must end with "
                   f"'Copy with: {module}.py, ... (and an empty __init__.py).'")
    assert files[0] == f"{module}.py" and files[1:] == sorted(set(files[1:]) - {files[0]}), \
        f"list the file itself first, then the others once each, alphabetically: {files}"


@every_copyable
def test_copy_line_lists_exactly_the_import_closure(module):
    listed = {name[:-len(".py")] for name in copy_line(module) or []}
    needed = import_closure(module)
    assert listed == needed, (f"listed but not needed: {sorted(listed - needed)}; "
                              f"needed but not listed: {sorted(needed - listed)}")


def test_the_subprocess_cannot_import_tinyflow(report):
    assert report["finders"] == [], "some finder on the subprocess's path still finds tinyflow"
    assert not report["tinyflow_imports"] and report["tinyflow_modules"] == []


@every_copyable
def test_listed_files_import_without_tinyflow(report, module):
    assert report["imports"][module].startswith(report["packages"]), report["imports"][module]


@every_copyable
def test_dropping_any_listed_file_breaks_the_import(report, module):
    # and broken because that file is missing, not for some other reason
    imported_anyway = [dropped for dropped, error in report["without"][module].items()
                       if error is None or dropped not in error]
    assert imported_anyway == [], f"{module}.py imports without {imported_anyway}: do not list them"


@every_layer
def test_copied_layer_inverse_undoes_forward(report, name):
    errors = layer_errors(report, name)
    assert errors["round trip x -> y -> x"] <= ROUND_TRIP_TOL, errors


@every_layer
def test_copied_layer_forward_undoes_inverse(report, name):
    errors = layer_errors(report, name)
    assert errors["round trip y -> x -> y"] <= ROUND_TRIP_TOL, errors


@every_layer
def test_copied_layer_log_det_matches_autograd_jacobian(report, name):
    errors = layer_errors(report, name)
    assert errors["log_det vs autograd Jacobian"] <= AUTOGRAD_TOL, errors


@every_layer
def test_copied_layer_log_det_matches_finite_difference_jacobian(report, name):
    errors = layer_errors(report, name)
    assert errors["log_det vs finite differences"] <= FINITE_DIFF_TOL, errors


@every_layer
def test_copied_layer_inverse_log_det_is_minus_forward(report, name):
    errors = layer_errors(report, name)
    assert errors["inverse log_det + forward log_det"] <= AUTOGRAD_TOL, errors


def test_copied_checker_catches_a_wrong_sign_log_det(report):
    errors = report["wrong_sign"]
    assert isinstance(errors, dict), errors
    assert errors["log_det vs autograd Jacobian"] > 0.1 and errors["log_det vs finite differences"] > 0.1, errors


def test_copied_flow_log_prob_is_the_change_of_variables(report):
    # log q(f(z)) = log p_base(z) - log|det df/dz|, the Jacobian by central differences
    assert isinstance(report["flow"], float), report["flow"]
    assert report["flow"] <= FINITE_DIFF_TOL

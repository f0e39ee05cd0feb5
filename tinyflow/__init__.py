"""tinyflow: normalizing flows in plain NumPy + autograd, written to be read.

The contract every layer obeys
------------------------------
Arrays are float64 and batch-first: points (N, D), log-determinants (N,).

    params = layer.init(rng, dim)           # pytree of float64 arrays ({} if none)
    y, log_det = layer.forward(params, x)   # generative direction (base -> data); log|det dy/dx|
    x, log_det = layer.inverse(params, y)   # normalizing direction (data -> base); log|det dx/dy|

and the inverse log_det at y = f(x) is minus the forward one at x. A Flow(base, layers)
samples by running the layers forward from the base and evaluates log q(x) by running
them inverse from the data:

    log q(x) = log p_base(z) + sum_k log|det d f_k^-1 / d input|,   z = f_1^-1(... f_K^-1(x))

Layers hold only hyperparameters; parameters are passed explicitly, so autograd.grad
differentiates any loss with respect to them. Every random draw takes a
numpy.random.Generator.

Where things live (one concept per file; a layer's docstring names the files to copy with it)
-----------------------------------------------------------------------------------------
Layers:            elementwise.py (Affine, Exp), leaky_relu.py, permutation.py (LULinear, Permute,
                   Reverse), coupling.py, autoregressive.py, spline_coupling.py,
                   spline_autoregressive.py, planar.py, radial.py, residual.py, amortised.py,
                   invert.py, continuous.py, stack.py (K layers of one kind as one layer and one node)
Conditioners:      made.py (masked autoregressive networks), mlp.py
Their maths:       spline.py (the rational-quadratic spline), lipschitz.py (spectral norm,
                   LipSwish), fixed_point.py (Banach), ode.py (RK4 and friends)
Primitives:        affine.py, linear.py, coupling_backprop.py, spline_backprop.py,
  (backprop by     planar_backprop.py, radial_backprop.py, residual_backprop.py,
   hand, ch. 8)    field_backprop.py, amortised_backprop.py
Flows and bases:   flow.py, distributions.py
Training:          train.py (fit, losses, Adam), annealing.py, leaves.py (flat parameters),
                   flow_matching.py, residual_estimators.py (log-det series), bounds.py (ELBO, IWAE)
Checking:          check.py (check_layer), evaluate.py (held-out report, box check), claims.py,
                   validate.py (input checks), strategies.py (hypothesis strategies for tests)
Targets and data:  targets.py, energies.py, datasets.py (the UCI digits)
Chapters' tools:   plotting.py, layer_plots.py, benchmark.py, tape.py (autograd's tape, counted),
                   progress.py, threads.py, memory.py, columns.py, io.py (save_params / load_params, never pickled)
"""
# Layers
from .elementwise import Affine, Exp
from .leaky_relu import LeakyReLU
from .permutation import LULinear, Permute, Reverse
from .coupling import AffineCoupling, alternating_masks
from .autoregressive import AffineAutoregressive
from .spline import RationalQuadraticSpline
from .spline_coupling import SplineCoupling
from .spline_autoregressive import SplineAutoregressive
from .planar import Planar, planar_plain
from .radial import Radial, radial_plain
from .residual import InvertibleResidual
from .amortised import AmortisedAffine, AmortisedPlanar
from .invert import Invert
from .stack import Stack
from .continuous import ContinuousFlow
# Conditioners and maths
from .made import made, made_degrees
from .mlp import dense_relu, dense_tanh, mlp, mlp_init
from .lipschitz import power_iteration, spectral_norm
from .fixed_point import banach_iterate
# Flows and bases
from .distributions import DiagNormal, StandardNormal
from .flow import Flow
# Training
from .train import (adam, adam_update, adamw, clip_by_norm, fit, flat_loss_and_grad, forward_kl, gaussian_noise,
                    reverse_kl, step_sizes)
from .annealing import annealed_fit
from .leaves import flatten_params
from .flow_matching import flow_matching_batches, flow_matching_loss, line_weights
from .residual_estimators import estimate_log_det, estimated_log_prob
from .bounds import elbo, iwae_bound, log_mean_exp, log_weights
# Checking and evaluation
from .check import autograd_jacobian, check_layer, numerical_jacobian
from .evaluate import box_check, format_box_check, format_report, held_out_report
from .claims import claims
from .validate import NonFiniteError
# Targets and data
from .targets import Banana, Checkerboard, ShiftedGaussian, UniformConditionalGaussian
from .energies import Energy, GaussianMixture, format_reverse_report, grid_entropy, grid_log_Z, reverse_report
from . import datasets                      # tinyflow.datasets.digits(): real data for chapter 12
# Tools
from .io import load_params, save_params
from .memory import keep_freed_memory

__all__ = [
    # layers
    "Affine", "Exp", "LeakyReLU", "LULinear", "Permute", "Reverse", "AffineCoupling", "alternating_masks",
    "AffineAutoregressive", "RationalQuadraticSpline", "SplineCoupling", "SplineAutoregressive",
    "Planar", "planar_plain", "Radial", "radial_plain", "InvertibleResidual", "AmortisedAffine", "AmortisedPlanar",
    "Invert", "ContinuousFlow", "Stack",
    # conditioners and maths
    "made", "made_degrees", "dense_relu", "dense_tanh", "mlp", "mlp_init", "power_iteration", "spectral_norm",
    "banach_iterate",
    # flows and bases
    "DiagNormal", "StandardNormal", "Flow",
    # training
    "adam", "adam_update", "adamw", "clip_by_norm", "fit", "flat_loss_and_grad", "forward_kl", "gaussian_noise",
    "reverse_kl", "step_sizes", "annealed_fit", "flatten_params", "flow_matching_batches", "flow_matching_loss",
    "line_weights", "estimate_log_det", "estimated_log_prob", "elbo", "iwae_bound", "log_mean_exp", "log_weights",
    # checking and evaluation
    "autograd_jacobian", "check_layer", "numerical_jacobian", "box_check", "format_box_check", "format_report", "held_out_report",
    "claims", "NonFiniteError",
    # targets and data
    "Banana", "Checkerboard", "ShiftedGaussian", "UniformConditionalGaussian", "Energy", "GaussianMixture",
    "format_reverse_report", "grid_entropy", "grid_log_Z", "reverse_report", "datasets",
    # tools
    "load_params", "save_params", "keep_freed_memory",
]

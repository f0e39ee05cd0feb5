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
"""
from .annealing import annealed_fit
from . import datasets                      # tinyflow.datasets.digits(): real data for chapter 12
from .autoregressive import AffineAutoregressive
from .check import autograd_jacobian, check_layer, numerical_jacobian
from .claims import claims
from .continuous import ContinuousFlow
from .coupling import AffineCoupling, alternating_masks
from .distributions import DiagNormal, StandardNormal
from .elementwise import Affine, Exp
from .energies import Energy, GaussianMixture, format_reverse_report, grid_entropy, grid_log_Z, reverse_report
from .evaluate import box_check, format_report, held_out_report
from .flow import Flow
from .flow_matching import flow_matching_batches, flow_matching_loss
from .invert import Invert
from .io import load_params, save_params
from .leaky_relu import LeakyReLU
from .leaves import flatten_params
from .made import made, made_degrees
from .memory import keep_freed_memory
from .mlp import dense_relu, dense_tanh
from .permutation import LULinear, Permute, Reverse
from .planar import Planar
from .radial import Radial
from .spline import RationalQuadraticSpline
from .spline_autoregressive import SplineAutoregressive
from .spline_coupling import SplineCoupling
from .targets import Banana, Checkerboard, ShiftedGaussian, UniformConditionalGaussian
from .validate import NonFiniteError
from .train import (adam, adam_update, adamw, clip_by_norm, fit, flat_loss_and_grad, forward_kl, gaussian_noise,
                    reverse_kl, step_sizes)

__all__ = [
    "Affine", "AffineAutoregressive", "AffineCoupling", "Banana", "DiagNormal", "Exp", "Flow",
    "Invert", "LULinear", "LeakyReLU", "Permute", "Reverse", "ShiftedGaussian", "StandardNormal",
    "UniformConditionalGaussian", "adam", "adamw", "alternating_masks", "autograd_jacobian",
    "check_layer", "fit", "format_report", "forward_kl", "gaussian_noise", "held_out_report",
    "load_params", "numerical_jacobian", "reverse_kl", "save_params",
    "Energy", "GaussianMixture", "format_reverse_report", "grid_entropy", "grid_log_Z", "reverse_report",
    "adam_update", "claims", "clip_by_norm", "dense_relu", "dense_tanh", "flat_loss_and_grad",
    "flatten_params", "keep_freed_memory", "made", "made_degrees", "step_sizes",
    "RationalQuadraticSpline", "SplineAutoregressive", "SplineCoupling",
    "Planar", "Radial",
    "Checkerboard",
    "datasets",
    "ContinuousFlow", "flow_matching_batches", "flow_matching_loss",
    "annealed_fit", "NonFiniteError", "box_check",
]

"""Training: the two KL losses, Adam/AdamW that skip non-finite steps, and a fit loop.

    forward KL (maximum likelihood, needs samples of p):   loss = -mean_x log q(x)
        = KL(p || q) + H(p), so its floor is the target's entropy H(p).
    reverse KL (needs only an unnormalised log p~):        loss = mean_x [log q(x) - log p~(x)], x ~ q
        = KL(q || p) - log Z, so its floor is -log Z (a negative loss is not a bug).

Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):
    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   mhat = m / (1 - b1^t),  vhat = v / (1 - b2^t)
    theta <- theta - step_size_k * (mhat / (sqrt(vhat) + eps) + weight_decay * theta)

fit adds what a training run needs around that update: a step-size schedule step_size_k
(warm-up, cosine or linear decay), gradient-norm clipping, skipping non-finite steps, a
callback for snapshots, early stopping on a validation set, and a progress line.
"""
import inspect
import time

import autograd.numpy as np
import numpy as onp
from autograd import value_and_grad

from . import memory, threads
from .leaves import flatten_params, leaf_index, leaves
from .progress import Progress, interactive
from .validate import NonFiniteError, check_count, check_non_negative, check_points, check_positive, check_rng


def forward_kl(flow):
    """loss(params, x) = -mean log q(x), x: (N, D) samples of the target; for a conditional flow
    loss(params, (x, c)) = -mean log q(x | c), with (x, c) pairs: (N, D) and (N, C)."""
    def loss(params, batch):
        if isinstance(batch, tuple):
            x, context = batch
            return -np.mean(flow.log_prob(params, x, context=context))
        return -np.mean(flow.log_prob(params, batch))
    return loss


def reverse_kl(flow, log_p):
    """loss(params, eps) = mean(log q(x) - log_p(x)), x = flow pushed from noise eps ~ N(0, I) (N, D)."""
    def loss(params, eps):
        x, log_q = flow.sample_from_noise(params, eps)
        return np.mean(log_q - log_p(x))
    return loss


def gaussian_noise(dim):
    """A sampler for reverse-KL training: (rng, n) -> eps ~ N(0, I) of shape (n, dim)."""
    return lambda rng, n: rng.standard_normal((n, dim))


def adam_update(theta, g, m, v, t, step_size, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """One AdamW step on flat float arrays; t counts applied steps from 1. Returns theta, m, v."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    theta = theta - step_size * (m_hat / (onp.sqrt(v_hat) + eps) + weight_decay * theta)
    return theta, m, v


def adam(grad, x, callback=None, num_iters=100, step_size=0.001, b1=0.9, b2=0.999, eps=1e-8,
         weight_decay=0.0):
    """Drop-in for autograd.misc.optimizers.adam: grad(params, i) -> gradient pytree and
    callback(params, i, g) run before each update. A non-finite gradient skips its update."""
    step_size = check_positive(step_size, "step_size")
    theta, unflatten = flatten_params(x)
    m, v, t = onp.zeros_like(theta), onp.zeros_like(theta), 0
    for i in range(num_iters):
        g = flatten_params(grad(unflatten(theta), i))[0]
        if callback:
            callback(unflatten(theta), i, unflatten(g))
        if not onp.all(onp.isfinite(g)):
            continue
        t += 1
        theta, m, v = adam_update(theta, g, m, v, t, step_size, b1, b2, eps, weight_decay)
    return unflatten(theta)


def adamw(grad, x, callback=None, num_iters=100, step_size=0.001, b1=0.9, b2=0.999, eps=1e-8,
          weight_decay=1e-2):
    """adam with weight decay on by default (PyTorch's AdamW default, 1e-2)."""
    return adam(grad, x, callback, num_iters, step_size, b1, b2, eps, weight_decay)




def flat_loss_and_grad(loss, params):
    """theta, unflatten, loss_and_grad: the loss as a function of one flat parameter vector theta,
    loss_and_grad(theta, batch) -> (loss, gradient as a flat vector like theta).

    Why flat: autograd differentiates a pytree argument as one boxed container, and on the
    backward pass every lookup in it (params["layers"][k], layer["W"]) builds a zero copy of the
    whole container. Reading each leaf out of theta (`_leaf`, whose gradient is added straight
    into its part of one shared buffer) makes each leaf one cheap node instead; the gradient is
    the same, and a 16-block coupling step runs in well under half the time (leaves.py)."""
    memory.keep_freed_memory()
    theta, unflatten = flatten_params(params)
    index = leaf_index(params)
    return theta, unflatten, value_and_grad(lambda theta, batch: loss(leaves(theta, index), batch))


def check_callback(callback):
    """A callback must be callable as callback(step, params, loss); say so before training starts."""
    if callback is None:
        return
    if not callable(callback):
        raise TypeError(f"callback must be a function callback(step, params, loss), got {type(callback).__name__}")
    try:
        inspect.signature(callback).bind(1, {}, 0.0)
    except TypeError as error:
        raise TypeError(f"callback must take three arguments, callback(step, params, loss): {error}") from None
    except ValueError:                                 # no signature to read (a builtin): trust it
        pass


def _batches(data, rng, batch_size):
    """Endless batches: fresh draws from a sampler data(rng, n), or shuffled epochs of an array
    (or of a tuple of arrays with one row per example, such as (x, context) pairs, kept together)."""
    if callable(data):
        while True:
            yield data(rng, batch_size)
    if isinstance(data, list) and data and all(onp.ndim(a) == 2 for a in data) and len({onp.shape(a) for a in data}) > 1:
        raise TypeError(f"data is a list of {len(data)} arrays of shapes {[onp.shape(a) for a in data]}: to train "
                        f"on pairs such as (x, context), pass them as a tuple (x, c)")
    arrays = (tuple(check_points(a, name=f"data[{i}]") for i, a in enumerate(data)) if isinstance(data, tuple)
              else (check_points(data, name="data"),))
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"the arrays of a data tuple need one row per example each, got "
                         f"{[len(a) for a in arrays]} rows")
    while True:
        order = rng.permutation(len(arrays[0]))
        for start in range(0, len(order), batch_size):
            batch = tuple(a[order[start:start + batch_size]] for a in arrays)
            yield batch if isinstance(data, tuple) else batch[0]


SCHEDULES = {
    "constant": lambda fraction: 1.0,
    "cosine": lambda fraction: 0.5 * (1 + onp.cos(onp.pi * fraction)),   # 1 -> 0 along half a cosine
    "linear": lambda fraction: 1 - fraction,                             # 1 -> 0 in a straight line
}


def step_sizes(step_size, num_steps, schedule="constant", warmup=0):
    """The step size of every step, (num_steps,): step_size * warm-up ramp * schedule.

    schedule: "constant", "cosine" or "linear" (a factor of the step's position in the run,
        fraction = step / num_steps, falling from 1 towards 0), or a callable step -> factor.
    warmup: the first `warmup` steps ramp the factor up linearly from 1/warmup to 1, so Adam's
        first steps, taken while its moment estimates are still rough, are small.
    A decaying step size lets the parameters settle at the end instead of wandering around the
    optimum at the full step size, as constant-step Adam does.
    """
    step_size = check_positive(step_size, "step_size")
    num_steps = check_count(num_steps, "num_steps")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, onp.integer)) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0 (a number of steps), got {warmup!r}")
    if callable(schedule):
        factor = onp.array([schedule(step) for step in range(num_steps)], dtype=float)
    elif schedule in SCHEDULES:
        factor = onp.array([SCHEDULES[schedule](step / num_steps) for step in range(num_steps)])
    else:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a callable step -> factor, "
                         f"got {schedule!r}")
    if factor.shape != (num_steps,) or not onp.all(onp.isfinite(factor) & (factor >= 0)):
        raise ValueError("a schedule must give one finite factor >= 0 per step")
    ramp = onp.minimum(1.0, (onp.arange(num_steps) + 1) / max(warmup, 1))
    return step_size * ramp * factor


def clip_by_norm(g, max_norm):
    """g scaled down to length max_norm if it is longer: (clipped g, its norm before clipping).
    Clipping keeps one outlying batch (a point deep in a tail, where log q is steep) from throwing
    the parameters far; the direction of the step is unchanged."""
    norm = onp.sqrt(g @ g)
    return (g * (max_norm / norm) if norm > max_norm else g), norm


def fit(loss, params, data, rng, num_steps, batch_size, step_size=1e-3, schedule="constant", warmup=0,
        weight_decay=0.0, clip_norm=None, callback=None, validation=None, eval_every=50,
        patience=None, restore_best=True, max_skips=20, verbose=None, print_every=None):
    """Minimise loss(params, batch) with AdamW; return (params, history).

    data: a sampler data(rng, n) (a fresh batch every step) or an (M, D) array (shuffled minibatches),
        or a tuple of arrays with M rows each, minibatched together: (x, context) for a conditional flow.
    step_size, schedule, warmup: the step size of step k is step_sizes(...)[k] (see step_sizes):
        a named schedule ("constant", "cosine", "linear") or a callable step -> factor.
    weight_decay: decoupled, as in AdamW (Loshchilov & Hutter 2019) and torch.optim.AdamW: each
        step shrinks theta by step_size * weight_decay * theta, apart from the gradient. It is not
        the L2 penalty of torch.optim.Adam(weight_decay=...), which is added to the gradient and
        then rescaled by Adam, so the same number means a different strength there.
    clip_norm: if given, a gradient longer than this is scaled down to it (clip_by_norm).
    callback(step, params, loss): called after every step, step = 1 .. num_steps counting the
        steps taken so far, params the parameters after them, loss the batch loss of that step
        (NaN if it was skipped): for snapshots and curves.
    A step whose loss or gradient is not finite (or in which a layer overflowed, NonFiniteError)
    is skipped and counted; after `max_skips`
    consecutive skips training stops and returns the last good parameters.
    validation: held-out data; every `eval_every` steps loss(params, validation) is recorded; with
        restore_best the parameters with the lowest validation loss are returned, and with
        `patience` training stops after that many evaluations without improvement.
    verbose: one progress line once a run takes over 2 s; None shows it only in a terminal or a
        notebook, False never. print_every: also print the loss every that many steps.
    history: {"loss": (num_steps,) array, NaN where skipped or not reached, "step_size": (num_steps,),
              "skipped": int, "clipped": int, "validation": [(step, value)], "best_step": int or None,
              "stopped": str or None, "seconds": float}
    """
    check_rng(rng)
    threads.one_blas_thread()                          # small matrices: one BLAS thread (threads.py)
    num_steps, batch_size = check_count(num_steps, "num_steps"), check_count(batch_size, "batch_size")
    sizes = step_sizes(step_size, num_steps, schedule, warmup)
    weight_decay = check_non_negative(weight_decay, "weight_decay")
    if clip_norm is not None:
        clip_norm = check_positive(clip_norm, "clip_norm")
    eval_every, max_skips = check_count(eval_every, "eval_every"), check_count(max_skips, "max_skips")
    if patience is not None:
        patience = check_count(patience, "patience")
    if print_every is not None:
        print_every = check_count(print_every, "print_every")
    check_callback(callback)
    theta, unflatten, loss_and_grad = flat_loss_and_grad(loss, params)
    if not onp.all(onp.isfinite(theta)):
        raise ValueError("fit needs finite initial parameters")
    m, v, t = onp.zeros_like(theta), onp.zeros_like(theta), 0
    history = {"loss": onp.full(num_steps, onp.nan), "step_size": sizes, "skipped": 0, "clipped": 0,
               "validation": [], "best_step": None, "stopped": None, "seconds": 0.0}
    best, best_value, stale, run = theta, onp.inf, 0, 0
    progress = Progress(num_steps) if (interactive() if verbose is None else verbose) else None
    batches = _batches(data, rng, batch_size)
    start = time.perf_counter()
    for step in range(num_steps):
        try:
            value, g = loss_and_grad(theta, next(batches))
        except NonFiniteError:                         # an overflow inside a layer: a non-finite loss
            value, g = onp.nan, None
        if not (onp.isfinite(value) and onp.all(onp.isfinite(g))):
            history["skipped"] += 1
            run += 1
            if callback is not None:
                callback(step + 1, unflatten(theta), onp.nan)
            if run >= max_skips:
                history["stopped"] = (f"stopped at step {step}: {run} consecutive non-finite losses or "
                                      f"gradients; returning the last good parameters")
                break
            continue
        if clip_norm is not None:
            g, norm = clip_by_norm(g, clip_norm)
            history["clipped"] += int(norm > clip_norm)
        run, t = 0, t + 1
        history["loss"][step] = value
        theta, m, v = adam_update(theta, g, m, v, t, sizes[step], weight_decay=weight_decay)
        if not onp.all(onp.isfinite(theta)):          # cannot happen with finite g, but never return NaN
            raise FloatingPointError(f"parameters became non-finite at step {step}")
        if callback is not None:
            callback(step + 1, unflatten(theta), float(value))
        if progress:
            progress.update(step, value)
        if print_every and (step % print_every == 0 or step == num_steps - 1):
            print(f"step {step:6d}  loss {value:9.4f}")
        if validation is not None and (step % eval_every == 0 or step == num_steps - 1):
            val = float(loss(unflatten(theta), validation))
            history["validation"].append((step, val))
            if val < best_value:
                best, best_value, stale, history["best_step"] = theta, val, 0, step
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    history["stopped"] = (f"early stop at step {step}: best validation loss "
                                          f"{best_value:.4f} at step {history['best_step']}")
                    break
    history["seconds"] = time.perf_counter() - start
    if progress:
        progress.close()
    if history["stopped"] and verbose is not False:
        print(history["stopped"])
    if history["skipped"]:          # always said: a skipped step is never silent
        print(f"skipped {history['skipped']} of {num_steps} steps with a non-finite loss or gradient")
    restore = restore_best and validation is not None and onp.isfinite(best_value)
    return unflatten(best if restore else theta), history

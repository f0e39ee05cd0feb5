"""Training: the two KL losses, Adam/AdamW that skip non-finite steps, and a fit loop.

    forward KL (maximum likelihood, needs samples of p):   loss = -mean_x log q(x)
        = KL(p || q) + H(p), so its floor is the target's entropy H(p).
    reverse KL (needs only an unnormalised log p~):        loss = mean_x [log q(x) - log p~(x)], x ~ q
        = KL(q || p) - log Z, so its floor is -log Z (a negative loss is not a bug).

Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):
    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   mhat = m / (1 - b1^t),  vhat = v / (1 - b2^t)
    theta <- theta - step_size * (mhat / (sqrt(vhat) + eps) + weight_decay * theta)
"""
import autograd.numpy as np
import numpy as onp
from autograd import value_and_grad
from autograd.extend import SparseObject, defvjp, primitive, vspace
from autograd.misc import flatten

from .validate import check_count, check_points, check_rng


def forward_kl(flow):
    """loss(params, x) = -mean log q(x), x: (N, D) samples of the target."""
    def loss(params, x):
        return -np.mean(flow.log_prob(params, x))
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
    theta, unflatten = flatten(x)
    m, v, t = onp.zeros_like(theta), onp.zeros_like(theta), 0
    for i in range(num_iters):
        g = flatten(grad(unflatten(theta), i))[0]
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


def _map_leaves(f, tree):
    """The same nesting of dicts, lists and tuples, with f applied to every leaf."""
    if isinstance(tree, dict):
        return {key: _map_leaves(f, value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_leaves(f, value) for value in tree)
    return f(tree)


def _span(index):
    """flatten lays each leaf out in consecutive positions of theta: the slice holding it."""
    start = int(index.flat[0]) if index.size else 0
    return slice(start, start + index.size)


@primitive
def _leaf(theta, index):
    """theta[index]: one parameter array read out of the flat vector, as a slice (a view: no
    copy, no fancy indexing)."""
    return theta[_span(index)].reshape(index.shape)


def _leaf_vjp(leaf, theta, index):
    def vjp(g):
        def add_into(total):                  # autograd sums every leaf's piece into one theta-sized buffer
            total[_span(index)] += g.ravel()
            return total
        return SparseObject(vspace(theta), add_into)
    return vjp


defvjp(_leaf, _leaf_vjp)


def keep_freed_memory(nbytes=2 ** 24):
    """Ask glibc's malloc to keep up to 2 * nbytes of freed memory for reuse instead of returning
    it to the system after every training step.

    Why: autograd keeps every intermediate of a step alive until its backward pass ends (about
    10 MB for chapter 5's model), then frees it all. By default glibc hands that memory back, and
    the next step page-faults it in again, one 4 KiB page at a time: about 1500 faults and 5 ms
    of a 35 ms step here. How: glibc raises its mmap threshold to the size of a freed mmapped
    block and its trim threshold to twice that (mallopt(3), "dynamic mmap threshold"), so one
    nbytes array allocated and freed is enough; it is never written, so it costs no page faults.
    Harmless with other allocators; a no-op if MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or
    MALLOC_MMAP_THRESHOLD_ is set (glibc then leaves its thresholds where they were put).
    """
    onp.empty(nbytes // 8)


def flat_loss_and_grad(loss, params):
    """theta, unflatten, loss_and_grad: the loss as a function of one flat parameter vector theta,
    loss_and_grad(theta, batch) -> (loss, gradient as a flat vector like theta).

    Why flat: autograd differentiates a pytree argument as one boxed container, and on the
    backward pass every lookup in it (params["layers"][k], layer["W"]) builds a zero copy of the
    whole container. Reading each leaf out of theta (`_leaf`, whose gradient is added straight
    into its part of one shared buffer) makes each leaf one cheap node instead; the gradient is
    the same, and a 16-block coupling step runs in well under half the time."""
    keep_freed_memory()
    theta, unflatten = flatten(params)
    index = _map_leaves(lambda i: onp.asarray(i, dtype=int), unflatten(onp.arange(theta.size)))
    leaves = lambda theta: _map_leaves(lambda i: _leaf(theta, i), index)
    return theta, unflatten, value_and_grad(lambda theta, batch: loss(leaves(theta), batch))


def _batches(data, rng, batch_size):
    """Endless batches: fresh draws from a sampler data(rng, n), or shuffled epochs of an array."""
    if callable(data):
        while True:
            yield data(rng, batch_size)
    data = check_points(data, name="data")
    while True:
        order = rng.permutation(len(data))
        for start in range(0, len(data), batch_size):
            yield data[order[start:start + batch_size]]


def fit(loss, params, data, rng, num_steps, batch_size, step_size=1e-3, weight_decay=0.0,
        print_every=None, max_skips=20, validation=None, eval_every=50, patience=None):
    """Minimise loss(params, batch) with AdamW; return (params, history).

    data: a sampler data(rng, n) (a fresh batch every step) or an (M, D) array (shuffled minibatches).
    A step whose loss or gradient is not finite is skipped and counted; after `max_skips`
    consecutive skips training stops and returns the last good parameters.
    validation: held-out data; every `eval_every` steps loss(params, validation) is recorded, the
    best parameters are the ones returned, and with `patience` training stops after that many
    evaluations without improvement (early stopping).
    history: {"loss": (num_steps,) array, NaN where skipped or not reached, "skipped": int,
              "validation": [(step, value)], "best_step": int or None, "stopped": str or None}
    """
    check_rng(rng)
    num_steps, batch_size = check_count(num_steps, "num_steps"), check_count(batch_size, "batch_size")
    theta, unflatten, loss_and_grad = flat_loss_and_grad(loss, params)
    if not onp.all(onp.isfinite(theta)):
        raise ValueError("fit needs finite initial parameters")
    m, v, t = onp.zeros_like(theta), onp.zeros_like(theta), 0
    history = {"loss": onp.full(num_steps, onp.nan), "skipped": 0, "validation": [],
               "best_step": None, "stopped": None}
    best, best_value, stale, run = theta, onp.inf, 0, 0
    batches = _batches(data, rng, batch_size)
    for step in range(num_steps):
        value, g = loss_and_grad(theta, next(batches))
        if not (onp.isfinite(value) and onp.all(onp.isfinite(g))):
            history["skipped"] += 1
            run += 1
            if run >= max_skips:
                history["stopped"] = (f"stopped at step {step}: {run} consecutive non-finite losses or "
                                      f"gradients; returning the last good parameters")
                print(history["stopped"])
                break
            continue
        run, t = 0, t + 1
        history["loss"][step] = value
        theta, m, v = adam_update(theta, g, m, v, t, step_size, weight_decay=weight_decay)
        if not onp.all(onp.isfinite(theta)):          # cannot happen with finite g, but never return NaN
            raise FloatingPointError(f"parameters became non-finite at step {step}")
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
                    print(history["stopped"])
                    break
    if history["skipped"]:
        print(f"skipped {history['skipped']} of {num_steps} steps with a non-finite loss or gradient")
    return unflatten(best if validation is not None and onp.isfinite(best_value) else theta), history

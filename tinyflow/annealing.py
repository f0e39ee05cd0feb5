"""Annealed reverse KL (chapter 6): fit q to p~^beta with the exponent beta rising to 1.

Reverse KL, E_q[log q - log p~], only sees p~ where q already puts samples, so a q that starts
on one mode of a target never learns of the others. Raising p~ to a power beta < 1 flattens it
(the ratio of two densities p~(a) / p~(b) becomes its beta-th power), so early on every mode is
within reach; beta then rises linearly, and q follows the target as it sharpens:

    loss_k(params) = mean over eps of [log q(x) - beta_k log p~(x)],   x = f(eps), eps ~ N(0, I)
    beta_k = min(1, beta_start + (1 - beta_start) k / anneal_steps)     after k steps

After anneal_steps the loss is plain reverse KL, whose floor is -log Z. Chapters 6, 9 and 10
train with it.
"""
from .train import check_callback, fit, gaussian_noise, reverse_kl
from .validate import check_count, check_positive


def annealed_fit(flow, log_p, params, rng, num_steps, batch_size, beta_start, anneal_steps, callback=None,
                 **options):
    """Train `flow` by reverse KL on beta_k * log_p(x) (see above); return fit's (params, history).

    log_p: (N, D) -> (N,), the unnormalised target log-density. beta_start in (0, 1]: the first
    exponent; anneal_steps >= 1: the step at which beta reaches 1. callback(step, params, loss)
    is called as in fit; history["beta"] holds the exponent of every step. Every other option
    (step_size, schedule, warmup, clip_norm, ...) goes to fit unchanged."""
    beta_start = check_positive(beta_start, "beta_start")
    if beta_start > 1:
        raise ValueError(f"beta_start must be in (0, 1], got {beta_start}")
    anneal_steps = check_count(anneal_steps, "anneal_steps")
    check_callback(callback)
    beta = [beta_start]                 # the loss reads it at every step; after each step it rises

    def raise_beta(step, params, loss):
        beta[0] = min(1.0, beta_start + (1 - beta_start) * step / anneal_steps)
        if callback is not None:
            callback(step, params, loss)

    loss = reverse_kl(flow, lambda x: beta[0] * log_p(x))
    params, history = fit(loss, params, gaussian_noise(flow.dim), rng, num_steps, batch_size,
                          callback=raise_beta, **options)
    history["beta"] = [min(1.0, beta_start + (1 - beta_start) * k / anneal_steps) for k in range(num_steps)]
    return params, history

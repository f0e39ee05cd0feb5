"""Training: fit on a sampler and on an array, skipping non-finite steps, stopping after too many,
early stopping on a validation set, and Adam/AdamW against autograd's own Adam."""
import os
import time
import platform
import subprocess
import sys

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten
from autograd.misc.optimizers import adam as autograd_adam

import tinyflow as tf
import tinyflow.progress as tinyflow_progress


def small_flow():
    return tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], hidden=(8,)), tf.LULinear(),
                                          tf.AffineCoupling([0, 1], hidden=(8,))])


def fit_banana(data, seed=0, num_steps=150):
    flow = small_flow()
    rng = np.random.default_rng(seed)
    params = flow.init(rng)
    return flow, tf.fit(tf.forward_kl(flow), params, data, rng, num_steps=num_steps, batch_size=64,
                        step_size=1e-2)


def banana_sampler(rng, n):
    return tf.Banana().sample(rng, n) / 4          # scaled to O(1) so 150 steps make progress


def test_fit_on_a_sampler_lowers_the_loss():
    _, (params, history) = fit_banana(banana_sampler)
    losses = history["loss"]
    assert np.all(np.isfinite(losses)) and history["skipped"] == 0
    print(f"loss: first 10 steps {losses[:10].mean():.3f}, last 10 {losses[-10:].mean():.3f}")
    assert losses[-10:].mean() < losses[:10].mean() - 0.3


def test_fit_on_a_fixed_array_lowers_the_loss():
    data = banana_sampler(np.random.default_rng(5), 500)
    flow, (params, history) = fit_banana(data)
    initial = -np.mean(flow.log_prob(flow.init(np.random.default_rng(0)), data))
    final = -np.mean(flow.log_prob(params, data))
    print(f"NLL on the training array: {initial:.3f} -> {final:.3f}")
    assert final < initial - 0.3


@pytest.mark.parametrize("data", ["sampler", "array"])
def test_same_seed_gives_same_fit(data):
    data = banana_sampler if data == "sampler" else banana_sampler(np.random.default_rng(5), 300)
    first = fit_banana(data, seed=3, num_steps=20)[1]
    second = fit_banana(data, seed=3, num_steps=20)[1]
    assert np.array_equal(flatten(first[0])[0], flatten(second[0])[0])
    assert np.array_equal(first[1]["loss"], second[1]["loss"])


def quadratic(params, batch):
    """A loss with a known minimiser: mean squared distance from w to the batch rows."""
    return anp.mean(anp.sum((params["w"] - batch) ** 2, axis=1))


def nan_on_calls(bad_calls):
    """quadratic, but NaN on the given call numbers (fit calls the loss once per step)."""
    calls = []

    def loss(params, batch):
        calls.append(None)
        value = quadratic(params, batch)
        return value * np.nan if len(calls) - 1 in bad_calls else value
    return loss


def test_non_finite_steps_are_skipped_and_counted():
    data = np.random.default_rng(0).normal(2.0, 1.0, (200, 3))
    bad = {3, 4, 10, 27}
    params, history = tf.fit(nan_on_calls(bad), {"w": np.zeros(3)}, data, np.random.default_rng(1),
                             num_steps=40, batch_size=20, step_size=0.1)
    assert history["skipped"] == len(bad)
    assert np.array_equal(np.flatnonzero(np.isnan(history["loss"])), sorted(bad))
    assert np.all(np.isfinite(params["w"])) and history["stopped"] is None


def test_persistent_nan_stops_after_max_skips_with_last_good_params(capsys):
    data = np.random.default_rng(0).normal(2.0, 1.0, (200, 3))
    good_steps, max_skips = 12, 5
    params, history = tf.fit(nan_on_calls(set(range(good_steps, 1000))), {"w": np.zeros(3)}, data,
                             np.random.default_rng(1), num_steps=100, batch_size=20, step_size=0.1,
                             max_skips=max_skips)
    last_step = good_steps + max_skips - 1
    assert f"stopped at step {last_step}" in history["stopped"]
    assert f"stopped at step {last_step}" in capsys.readouterr().out
    assert history["skipped"] == max_skips
    # the same run cut short after the good steps: same batches, so bit-identical parameters
    reference, _ = tf.fit(quadratic, {"w": np.zeros(3)}, data, np.random.default_rng(1),
                          num_steps=good_steps, batch_size=20, step_size=0.1)
    assert np.array_equal(params["w"], reference["w"])


def test_early_stopping_returns_the_best_parameters():
    """Train towards 3, validate against 1: the validation loss falls while w passes 1, then
    rises, so patience stops the run and the best (not the last) parameters come back."""
    rng = np.random.default_rng(0)
    train, validation = rng.normal(3.0, 0.1, (100, 1)), rng.normal(1.0, 0.1, (50, 1))
    params, history = tf.fit(quadratic, {"w": np.zeros(1)}, train, np.random.default_rng(1),
                             num_steps=2000, batch_size=25, step_size=0.05,
                             validation=validation, eval_every=5, patience=4)
    values = dict(history["validation"])
    assert history["stopped"].startswith("early stop")
    assert max(values) < 1999                                  # it did stop early
    assert history["best_step"] == min(values, key=values.get)
    assert quadratic(params, validation) == pytest.approx(values[history["best_step"]], abs=1e-12)
    assert quadratic(params, validation) < values[max(values)]  # not the last parameters


def adam_problem():
    target = np.array([1.0, -2.0, 0.5, 3.0])
    loss = lambda params, i: anp.sum((params["w"] - target) ** 2) + anp.sum(params["v"] ** 4)
    return grad(loss), {"w": np.zeros(4), "v": np.ones(2)}


def test_adam_matches_autograd_adam():
    g, start = adam_problem()
    ours_seen, theirs_seen = [], []
    ours = tf.adam(g, start, lambda p, i, gr: ours_seen.append(i), num_iters=200, step_size=0.05)
    theirs = autograd_adam(g, start, lambda p, i, gr: theirs_seen.append(i), num_iters=200, step_size=0.05)
    assert ours_seen == theirs_seen == list(range(200))
    assert np.max(np.abs(flatten(ours)[0] - flatten(theirs)[0])) < 1e-12


def test_adamw_without_weight_decay_matches_autograd_adam():
    g, start = adam_problem()
    ours = tf.adamw(g, start, num_iters=100, step_size=0.05, weight_decay=0.0)
    theirs = autograd_adam(g, start, num_iters=100, step_size=0.05)
    assert np.max(np.abs(flatten(ours)[0] - flatten(theirs)[0])) < 1e-12


def test_adamw_decays_weights_towards_zero():
    """With a zero gradient, Adam does nothing and AdamW shrinks theta by (1 - step * decay)."""
    zero = lambda params, i: {"w": np.zeros(3)}
    out = tf.adamw(zero, {"w": np.ones(3)}, num_iters=10, step_size=0.1, weight_decay=0.5)
    assert np.allclose(out["w"], 0.95 ** 10, rtol=1e-12, atol=0)


def test_adam_skips_non_finite_gradients():
    """A NaN gradient skips its update entirely: 20 iterations with 3 NaN gradients end where
    17 clean iterations end (the gradient depends on the parameters only)."""
    g, start = adam_problem()

    def sometimes_nan(params, i):
        gradient = g(params, i)
        return {key: value * np.nan for key, value in gradient.items()} if i in (2, 9, 15) else gradient
    ours = tf.adam(sometimes_nan, start, num_iters=20, step_size=0.05)
    clean = tf.adam(g, start, num_iters=17, step_size=0.05)
    assert np.all(np.isfinite(flatten(ours)[0]))
    assert np.array_equal(flatten(ours)[0], flatten(clean)[0])


def test_flat_gradient_equals_the_gradient_with_respect_to_the_nested_params():
    flow = tf.Flow(tf.DiagNormal(3), [tf.AffineCoupling([1, 0, 1], hidden=(8,)), tf.LULinear(), tf.Reverse(),
                                      tf.AffineAutoregressive(hidden=(8,)), tf.LeakyReLU(0.3, learnable=True)])
    rng = np.random.default_rng(0)
    theta_0, unflatten = flatten(flow.init(rng))
    params = unflatten(theta_0 + 0.5 * rng.standard_normal(theta_0.shape))   # away from the identity
    x = rng.standard_normal((40, 3))
    theta, _, loss_and_grad = tf.train.flat_loss_and_grad(tf.forward_kl(flow), params)
    value, flat_gradient = loss_and_grad(theta, x)
    assert value == tf.forward_kl(flow)(params, x)
    nested_gradient = flatten(grad(tf.forward_kl(flow))(params, x))[0]
    assert np.max(np.abs(flat_gradient - nested_gradient)) <= 1e-12 * max(1.0, np.max(np.abs(nested_gradient)))


FREE_AND_REFAULT = """
import resource, sys
import numpy as np
from tinyflow.memory import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
def step():                                   # like a training step: ~10 MiB alive at once, then freed
    arrays = [np.ones((512, 64)) for _ in range(40)]
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the page faults it removes are glibc's")
def test_keep_freed_memory_stops_page_faults_between_steps():
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    faults = {mode: float(subprocess.run([sys.executable, "-c", FREE_AND_REFAULT, mode], env=env, check=True,
                                         capture_output=True, text=True).stdout)
              for mode in ("default", "keep")}
    assert faults["default"] > 1000                # ~10 MiB returned and faulted back in, 4 KiB at a time
    assert faults["keep"] < 0.01 * faults["default"]


def test_cosine_schedule_warms_up_then_decays_to_zero():
    sizes = tf.step_sizes(1e-3, 100, "cosine", warmup=10)
    k = np.arange(100)
    expected = 1e-3 * np.minimum(1, (k + 1) / 10) * 0.5 * (1 + np.cos(np.pi * k / 100))
    assert np.allclose(sizes, expected, rtol=1e-14, atol=0)        # the same product, another rounding order
    assert sizes[0] == pytest.approx(1e-4) and np.argmax(sizes) == 9 and np.all(np.diff(sizes[9:]) < 0)


def test_named_schedules_follow_their_formulas():
    k = np.arange(50)
    assert np.all(tf.step_sizes(0.1, 50) == 0.1)
    assert np.allclose(tf.step_sizes(0.1, 50, "linear"), 0.1 * (1 - k / 50), rtol=1e-14, atol=0)


def test_a_callable_schedule_scales_the_step_size():
    halving = lambda step: 0.5 ** (step // 10)
    assert np.array_equal(tf.step_sizes(1.0, 30, halving), np.repeat([1.0, 0.5, 0.25], 10))


def test_fit_takes_the_scheduled_step_sizes():
    """With a zero gradient AdamW only decays: theta_K = prod_k (1 - size_k * decay) theta_0."""
    zero_loss = lambda params, batch: 0.0 * anp.sum(params["w"])
    sizes = tf.step_sizes(0.1, 20, "cosine", warmup=3)
    params, history = tf.fit(zero_loss, {"w": np.ones(2)}, np.zeros((8, 2)), np.random.default_rng(0),
                             num_steps=20, batch_size=4, step_size=0.1, schedule="cosine", warmup=3,
                             weight_decay=0.5)
    assert np.array_equal(history["step_size"], sizes)
    assert np.allclose(params["w"], np.prod(1 - 0.5 * sizes), rtol=1e-14, atol=0)


@pytest.mark.parametrize("step_size", [-1, 0.0, np.inf, np.nan])
def test_a_step_size_that_is_not_positive_is_refused(step_size):
    with pytest.raises(ValueError, match="step_size must be positive"):
        tf.fit(quadratic, {"w": np.zeros(3)}, np.ones((10, 3)), np.random.default_rng(0), 5, 2, step_size)
    with pytest.raises(ValueError, match="step_size must be positive"):
        tf.adam(lambda p, i: p, {"w": np.zeros(3)}, step_size=step_size)


@pytest.mark.parametrize("schedule, warmup", [("exponential", 0), (lambda step: -1.0, 0), ("cosine", -5),
                                              ("cosine", 2.5)])
def test_a_bad_schedule_or_warmup_is_refused(schedule, warmup):
    with pytest.raises(ValueError, match="schedule|warmup"):
        tf.step_sizes(1e-3, 10, schedule, warmup)


def test_clipping_keeps_the_direction_and_caps_the_length():
    g = np.array([3.0, -4.0])
    clipped, norm = tf.clip_by_norm(g, 1.0)
    assert norm == 5.0 and np.allclose(clipped, g / 5, rtol=1e-15, atol=0)
    assert tf.clip_by_norm(g, 10.0)[0] is g                   # short gradients pass unchanged


def test_fit_counts_the_steps_it_clips():
    """The gradient of the quadratic at w = 0 towards batches near 10 has length about 35, then
    shrinks as w approaches them: clipping at 1 caps the early steps only."""
    data = np.random.default_rng(0).normal(10.0, 0.1, (64, 3))
    params, history = tf.fit(quadratic, {"w": np.zeros(3)}, data, np.random.default_rng(1), num_steps=400,
                             batch_size=16, step_size=0.1, clip_norm=1.0)
    assert 0 < history["clipped"] < 400
    assert np.allclose(params["w"], 10.0, atol=0.1)


def test_callback_sees_every_step_and_the_parameters_after_it():
    seen = []
    params, history = tf.fit(quadratic, {"w": np.zeros(3)}, np.ones((10, 3)), np.random.default_rng(0),
                             num_steps=7, batch_size=5, step_size=0.1,
                             callback=lambda step, p, loss: seen.append((step, p["w"].copy(), loss)))
    assert [step for step, _, _ in seen] == list(range(1, 8))
    assert np.array_equal(seen[-1][1], params["w"])            # after the last step: what fit returns
    assert [loss for _, _, loss in seen] == list(history["loss"])


def test_without_restore_best_the_last_parameters_come_back():
    rng = np.random.default_rng(0)
    train, validation = rng.normal(3.0, 0.1, (100, 1)), rng.normal(1.0, 0.1, (50, 1))
    last = []
    params, history = tf.fit(quadratic, {"w": np.zeros(1)}, train, np.random.default_rng(1), num_steps=300,
                             batch_size=25, step_size=0.05, validation=validation, eval_every=5,
                             restore_best=False, callback=lambda step, p, loss: last.append(p))
    assert history["best_step"] < 299 and np.array_equal(params["w"], last[-1]["w"])


def test_progress_line_only_when_asked_or_interactive(capsys, monkeypatch):
    run = lambda verbose: tf.fit(quadratic, {"w": np.zeros(3)}, np.ones((10, 3)), np.random.default_rng(0),
                                 num_steps=30, batch_size=5, step_size=0.1, verbose=verbose)
    monkeypatch.setattr(tinyflow_progress.Progress, "__init__", lambda self, n, after=0.0: (
        setattr(self, "num_steps", n), setattr(self, "after", 0.0), setattr(self, "shown", False),
        setattr(self, "start", time.perf_counter() - 1), setattr(self, "last", 0.0),
        setattr(self, "stream", sys.stderr)) and None)
    run(None)                                                    # pytest's stderr is no terminal
    assert capsys.readouterr().err == ""
    run(True)
    err = capsys.readouterr().err
    assert "step 30/30" in err and "steps/s" in err and "s left" in err and err.endswith("\n")
    run(False)
    assert capsys.readouterr().err == ""

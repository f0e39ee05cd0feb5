"""annealed_fit: reverse KL on beta * log p~ with beta rising linearly to 1, on fit's path."""
import numpy as np
import pytest

import tinyflow as tf


def setup():
    flow = tf.Flow(tf.StandardNormal(2), [tf.AffineCoupling([1, 0], hidden=(8,)), tf.AffineCoupling([0, 1], hidden=(8,))])
    return flow, flow.init(np.random.default_rng(0)), tf.Energy(2).log_prob


def test_beta_rises_linearly_from_its_start_and_stays_at_one():
    flow, params, log_p = setup()
    _, history = tf.annealed_fit(flow, log_p, params, np.random.default_rng(1), 10, 32, beta_start=0.2,
                                 anneal_steps=4, verbose=False)
    assert history["beta"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 1])


def test_the_loss_at_each_step_uses_that_steps_beta():
    """With q fixed (step size ~0), the loss is mean(log q) - beta_k mean(log p~) on the step's own
    noise: reconstruct both parts from the same generator and compare."""
    flow, params, log_p = setup()
    _, history = tf.annealed_fit(flow, log_p, params, np.random.default_rng(1), 3, 64, beta_start=0.5,
                                 anneal_steps=2, step_size=1e-300, verbose=False)
    rng = np.random.default_rng(1)
    for k, beta in enumerate([0.5, 0.75, 1.0]):
        x, log_q = flow.sample_from_noise(params, rng.standard_normal((64, 2)))
        assert history["loss"][k] == pytest.approx(np.mean(log_q - beta * log_p(x)), rel=1e-12)


def test_beta_start_one_is_plain_reverse_kl():
    flow, params, log_p = setup()
    annealed, _ = tf.annealed_fit(flow, log_p, params, np.random.default_rng(1), 20, 64, beta_start=1.0,
                                  anneal_steps=5, step_size=1e-2, verbose=False)
    plain, _ = tf.fit(tf.reverse_kl(flow, log_p), params, tf.gaussian_noise(2), np.random.default_rng(1), 20, 64,
                      step_size=1e-2, verbose=False)
    assert np.array_equal(tf.flatten_params(annealed)[0], tf.flatten_params(plain)[0])


def test_the_callback_sees_every_step():
    flow, params, log_p = setup()
    seen = []
    tf.annealed_fit(flow, log_p, params, np.random.default_rng(1), 5, 16, beta_start=0.1, anneal_steps=5,
                    callback=lambda step, p, loss: seen.append(step), verbose=False)
    assert seen == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("options, error, match", [
    ({"beta_start": 0.0, "anneal_steps": 5}, ValueError, "beta_start"),
    ({"beta_start": 1.5, "anneal_steps": 5}, ValueError, r"beta_start must be in \(0, 1\]"),
    ({"beta_start": 0.1, "anneal_steps": 0}, ValueError, "anneal_steps"),
    ({"beta_start": 0.1, "anneal_steps": 2.5}, TypeError, "anneal_steps"),
    ({"beta_start": 0.1, "anneal_steps": 5, "callback": 3}, TypeError, "callback"),
])
def test_bad_settings_are_named(options, error, match):
    flow, params, log_p = setup()
    with pytest.raises(error, match=match):
        tf.annealed_fit(flow, log_p, params, np.random.default_rng(1), 5, 16, verbose=False, **options)

"""The same model on TensorFlow, JAX and PyTorch (Keras picks one per process).

Each backend trains the book's model briefly in a process of its own
(tests/backend_probe.py). The loss must be non-zero and fall on every backend:
on JAX a loss that Keras never collected trains on 0 without an error. A run
repeats on its backend with the same seed, and weights written on one backend
load on the others and compute the same codes and the same ELBO.
"""

import json

import numpy as np
import pytest
from conftest import ROOT, run_script

PROBE = ROOT / "tests" / "backend_probe.py"
BACKENDS = ("tensorflow", "jax", "torch")


def probe(backend, *args, env=None):
    env = {"KERAS_BACKEND": backend, "VAE_FAST": "", **(env or {})}
    result = run_script(PROBE, *args, env=env, timeout=900)
    assert result.returncode == 0, f"{backend}: {result.stderr[-3000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend  # the variable reached Keras
    return report


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """backend -> (folder, report of the first run, report of a repeat)."""
    runs = {}
    for backend in BACKENDS:
        first = tmp_path_factory.mktemp(f"{backend}-first")
        again = tmp_path_factory.mktemp(f"{backend}-again")
        runs[backend] = (first, probe(backend, "--out", first))
        runs[backend] += (probe(backend, "--out", again),)
    return runs


def step_losses(report):
    """Each step's own loss, from Keras' running means within each epoch."""
    means = np.asarray(report["step_losses"], "float64")
    per_epoch = np.split(means, len(report["history"]["loss"]))
    steps = [np.diff(m * np.arange(1, len(m) + 1), prepend=0) for m in per_epoch]
    return np.concatenate(steps)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loss_is_collected_and_falls(trained, backend):
    _, report, _ = trained[backend]
    losses = step_losses(report)
    assert len(losses) == 3 * 1024 // 64
    assert np.isfinite(losses).all() and losses.min() > 50  # nats: never 0
    assert losses[-16:].mean() < 0.8 * losses[:4].mean()
    history = report["history"]
    assert min(history["kl"]) > 0 and history["reconstruction"][-1] > 50
    np.testing.assert_allclose(  # β = 1 after the ramp: loss = reconstruction + KL
        history["loss"][-1],
        history["reconstruction"][-1] + history["kl"][-1],
        rtol=1e-3,
    )
    assert report["kl_weight_after"] == 1.0


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_seed_repeats_on_each_backend(trained, backend):
    _, first, again = trained[backend]
    np.testing.assert_allclose(first["step_losses"], again["step_losses"], rtol=1e-5)
    np.testing.assert_allclose(first["z_mean"], again["z_mean"], atol=1e-5)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("reader", BACKENDS)
def test_weights_load_on_every_other_backend(trained, reader):
    writers = [b for b in BACKENDS if b != reader]
    report = probe(reader, "--read", *(trained[w][0] for w in writers))
    for writer in writers:
        written, read = trained[writer][1], report["read"][str(trained[writer][0])]
        np.testing.assert_allclose(read["z_mean"], written["z_mean"], atol=1e-4)
        np.testing.assert_allclose(read["pixels"], written["pixels"], atol=1e-4)
        for term in ("neg_elbo", "reconstruction", "kl"):
            assert read["elbo"][term] == pytest.approx(written["elbo"][term], rel=1e-4)


@pytest.mark.timeout(1800)
def test_two_devices_split_each_batch_and_train_as_one(trained, tmp_path):
    """Data-parallel on two host devices (keras.distribution on JAX): each device
    gets half of each batch, the loss the loss layer adds is counted once (not
    once per replica, keras-team/keras#19891), so the run follows the
    single-device run, and its weights load into a single-device model."""
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    report = probe("jax", "--out", tmp_path, "--devices", "2", env=flags)
    single = trained["jax"][1]
    assert report["devices"] == 2 and single["batch_shard_shape"] is None
    assert report["batch_shard_shape"] == [64 // 2, 28, 28, 1]
    np.testing.assert_allclose(report["step_losses"], single["step_losses"], rtol=1e-3)
    read = probe("tensorflow", "--read", tmp_path)["read"][str(tmp_path)]
    np.testing.assert_allclose(read["z_mean"], report["z_mean"], atol=1e-4)

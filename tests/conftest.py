"""Shared fixtures: synthetic MNIST files (good and broken) and the real data path."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}


def make_mnist_arrays(seed=0):
    """Random data in exactly Keras' MNIST layout (uint8 images, labels 0..9)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in SHAPES.items():
        high = 256 if key.startswith("x") else 10
        arrays[key] = rng.integers(0, high, size=shape, dtype=np.uint8)
    return arrays


@pytest.fixture(scope="session")
def mnist_arrays():
    return make_mnist_arrays()


@pytest.fixture(scope="session")
def good_npz(tmp_path_factory, mnist_arrays):
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, **mnist_arrays)
    return path


@pytest.fixture
def write_npz(tmp_path, mnist_arrays):
    """Writes a variant of the good file: `write_npz(name, **overrides)`."""

    def write(name, drop=(), **overrides):
        arrays = {k: v for k, v in mnist_arrays.items() if k not in drop}
        arrays.update(overrides)
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write


@pytest.fixture(scope="session")
def real_mnist_path():
    """The real MNIST file CI points at; else Keras' own download is used."""
    return os.environ.get("VAE_MNIST_PATH")


def run_script(script, *args, env=None, timeout=600):
    """Runs `python SCRIPT ARGS` from the repo root; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(*args, env=None, timeout=600):
    """Runs `python vae.py ARGS` from the repo root; returns CompletedProcess."""
    return run_script(ROOT / "vae.py", *args, env=env, timeout=timeout)


def gradient(fn, x):
    """d sum(fn(x)) / dx on the backend Keras runs on: each has its own autodiff."""
    import keras

    x = np.asarray(x, dtype="float32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).sum().backward()
        return v.grad.numpy()
    import tensorflow as tf

    v = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(fn(v))
    return tape.gradient(y, v).numpy()

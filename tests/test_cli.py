"""`python vae.py`: one-line errors for bad input, and a fast end-to-end run."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_cli
from PIL import Image

import vae_helpers as vh


@pytest.mark.parametrize(
    "args, named",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--epochs", "ten"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--latent-dim", "0"], "--latent-dim"),
        (["--latent-dim", "1"], "--latent-dim"),
        (["--kl-weight", "-1"], "--kl-weight"),
        (["--kl-weight", "nan"], "--kl-weight"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_flags_give_one_line_naming_the_flag(args, named, tmp_path):
    result = run_cli(*args, "--output-dir", tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vae.py: error:") and named in lines[0]
    assert not (tmp_path / "out").exists()


def bad_data_cases(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"\x00not a zip" * 100)
    wrong_shape = tmp_path / "shape.npz"
    np.savez(
        wrong_shape,
        x_train=np.zeros((100, 28, 28), np.uint8),
        y_train=np.zeros((100,), np.uint8),
        x_test=np.zeros((10, 28, 28), np.uint8),
        y_test=np.zeros((10,), np.uint8),
    )
    return [
        (tmp_path / "missing.npz", "MNIST file not found"),
        (corrupt, "not a readable .npz file"),
        (wrong_shape, "x_train has shape (100, 28, 28)"),
    ]


def test_bad_data_files_give_one_line_and_write_nothing(tmp_path):
    for path, message in bad_data_cases(tmp_path):
        out = tmp_path / f"out-{path.stem}"
        result = run_cli("--data", path, "--output-dir", out)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("vae.py: error:") and message in last, result.stderr
        assert list(out.iterdir()) == []


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("--output-dir", blocker / "results")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vae.py: error: cannot write to output dir"), result.stderr


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast-run")
    result = run_cli("--output-dir", out, "--seed", "7", env={"VAE_FAST": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_fast_run_writes_every_output(fast_run):
    out, result = fast_run
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png", "history.json", "metrics.json", "vae.weights.h5"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_neg_elbo",
        "test_reconstruction",
        "test_kl",
        "epochs",
        "batch_size",
        "train_seconds",
        "seed",
        "test_iw_log_likelihood",
        "test_iw_standard_error",
        "grid_digits_found",
        "grid_confident_share",
        "iw_seconds",
        "check_seconds",
    ):
        assert key in metrics
    # The importance-weighted estimate is a tighter bound than the ELBO.
    assert metrics["test_iw_log_likelihood"] > -metrics["test_neg_elbo"] - 5
    assert metrics["iw_k"] == 1000
    assert metrics["seed"] == 7 and metrics["epochs"] == 1 and metrics["fast_mode"]
    assert metrics["test_neg_elbo"] == pytest.approx(
        metrics["test_reconstruction"] + metrics["test_kl"], rel=1e-5
    )
    with Image.open(out / "grid.png") as png:
        assert png.size == (420, 420)
    assert "test negative ELBO:" in result.stdout


def test_fast_run_lowers_the_loss(fast_run):
    """An untrained decoder scores about 784·ln 2 = 543 nats; one epoch beats it."""
    out, _ = fast_run
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_neg_elbo"] < 784 * np.log(2) - 20
    assert history["val_loss"][-1] < 784 * np.log(2) - 20


def test_interrupted_run_leaves_no_file(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "VAE_FAST": "0"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "vae.py"), "--output-dir", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a shell started in the background (nohup ... &, some
        # CI runners) passes SIGINT on as ignored, and Python keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    deadline = time.monotonic() + 240
    steps = f"/{math.ceil(60_000 / vh.DEFAULTS['batch_size'])}"  # Keras' progress bar
    while steps not in seen and time.monotonic() < deadline:  # training has begun
        seen += process.stdout.read(1)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode != 0, seen + rest
    if process.returncode == 130:  # Python saw the KeyboardInterrupt, not only TF
        assert "interrupted" in rest
    assert list(out.iterdir()) == []


def test_same_seed_gives_the_same_outputs(fast_run, tmp_path):
    """Same seed, machine and flags: the same grid.png byte for byte."""
    first, _ = fast_run
    result = run_cli("--output-dir", tmp_path, "--seed", "7", env={"VAE_FAST": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "grid.png").read_bytes() == (first / "grid.png").read_bytes()
    timing = (
        "seconds",
        "train_seconds",
        "eval_seconds",
        "iw_seconds",
        "grid_seconds",
        "check_seconds",
        "seconds_per_epoch",
    )
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (first, tmp_path))
    assert {k: v for k, v in one.items() if k not in timing} == {
        k: v for k, v in two.items() if k not in timing
    }

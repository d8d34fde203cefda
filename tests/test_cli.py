"""`python vae.py`: one-line errors for bad input, and a fast end-to-end run."""

import json
import math
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli
from PIL import Image

import vae
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
        (["--kl-warmup-epochs", "inf"], "--kl-warmup-epochs"),
        (["--kl-cycles", "0"], "--kl-cycles"),
        (["--kl-cycles", "1.5"], "--kl-cycles"),
        # one-epoch cycles, shorter than the default 3-epoch ramp
        (["--kl-cycles", str(vh.DEFAULTS.epochs)], "--kl-cycles"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--lr-warmup-epochs", "-0.5"], "--lr-warmup-epochs"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--iw-k", "-2"], "--iw-k"),
        (["--iw-images", "1"], "--iw-images"),
        (["--iw-images", "0"], "--iw-images"),
        (["--precision", "float16"], "--precision"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--devices", "0"], "--devices"),
    ],
)
def test_bad_flags_give_one_line_naming_the_flag(args, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vae.parse_args(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("vae.py: error:") and named in lines[0]


def test_good_flags_make_the_run_config():
    config, data, output_dir, devices = vae.parse_args(
        ["--seed", "0", "--iw-images", "all", "--no-grid-check", "--data", "m.npz"]
    )
    assert config.seed == 0 and config.iw_images is None and not config.grid_check
    assert config.batch_size == vh.DEFAULTS.batch_size and data == "m.npz"
    assert output_dir is None and devices == 1
    assert vae.parse_args([])[0] == vh.DEFAULTS


@pytest.mark.parametrize("backend", ["tensorflow", "torch", None])
def test_devices_need_the_jax_backend(backend, monkeypatch, capsys):
    if backend is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", backend)
    with pytest.raises(SystemExit) as exit_info:
        vae.parse_args(["--devices", "2"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--devices 2 needs KERAS_BACKEND=jax" in lines[0]
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert vae.parse_args(["--devices", "2"])[3] == 2


def test_help_and_flag_errors_do_not_import_tensorflow():
    code = (
        "import sys, vae\n"
        "for argv in (['--help'], ['--seed', '-1']):\n"
        "    try:\n"
        "        vae.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False False", result.stderr
    assert "--seed: must be between 0 and 4294967295" in result.stderr


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path):
    result = run_cli(
        "--batch-size", "5000", "--output-dir", tmp_path / "out", env={"VAE_FAST": "1"}
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "vae.py: error: --batch-size: 5000 is more than the 2048 training images"
    )
    assert list((tmp_path / "out").iterdir()) == []


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


def strict_json(path):
    """Parses like a strict reader: NaN and Infinity are errors."""

    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_fast_run_writes_one_complete_run(fast_run):
    out, result = fast_run
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*vh.RUN_FILES, "run.json"])
    metrics = strict_json(out / "metrics.json")
    strict_json(out / "history.json")
    assert vh.check_run(out) == metrics
    assert metrics["config"]["seed"] == 7 and metrics["epochs"] == 1
    assert metrics["fast_mode"] and metrics["iw_images"] == vh.FAST_IW_IMAGES
    assert metrics["iw_k"] == vh.DEFAULTS.iw_k
    assert metrics["precision_used"] == "float32"
    assert metrics["test_neg_elbo"] == pytest.approx(
        metrics["test_reconstruction"] + metrics["test_kl"], rel=1e-5
    )
    # The importance-weighted bound is tighter than the one-sample ELBO.
    assert metrics["test_iw_bound"] > -metrics["test_neg_elbo"] - 5
    assert len(metrics["test_kl_per_dimension"]) == 2
    assert set(metrics["grid_digits_found"]) <= set(range(10))
    with Image.open(out / "grid.png") as png:
        assert png.size == (420, 420)
    assert "test negative ELBO:" in result.stdout
    assert "importance-weighted bound (k=1000" in result.stdout


def test_fast_run_lowers_the_loss(fast_run):
    """An untrained decoder scores about 784·ln 2 = 543 nats; one epoch beats it."""
    out, _ = fast_run
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_neg_elbo"] < 784 * np.log(2) - 20
    assert history["val_loss"][-1] < 784 * np.log(2) - 20


def test_same_seed_gives_the_same_outputs(fast_run, tmp_path):
    """Same seed, machine and flags: the same grid.png byte for byte."""
    first, _ = fast_run
    result = run_cli("--output-dir", tmp_path, "--seed", "7", env={"VAE_FAST": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "grid.png").read_bytes() == (first / "grid.png").read_bytes()
    run_specific = {"run_id", "seconds_per_epoch"}

    def comparable(metrics):
        return {
            k: v
            for k, v in metrics.items()
            if k not in run_specific and not k.endswith("_seconds")
        }

    one, two = (json.loads((d / "metrics.json").read_text()) for d in (first, tmp_path))
    assert one["run_id"] != two["run_id"]
    assert comparable(one) == comparable(two)


def copy_run(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_interrupted_run_leaves_the_previous_run_as_it_was(fast_run, tmp_path):
    """SIGINT mid-training, as from a terminal: exit 130, the old run intact."""
    out = copy_run(fast_run[0], tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "vae.py"), "--output-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "VAE_FAST": "1", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell started in the background passes SIGINT on as ignored, and
        # Python keeps it ignored: restore the default, as a terminal has it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    steps = math.ceil(vh.FAST_TRAIN_IMAGES / vh.DEFAULTS.batch_size)
    for line in process.stdout:  # blocks until Keras' progress bar shows a step
        if re.search(rf"\b\d+/{steps}\b", line):  # "1/64", amid colour codes
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted; the output dir is as it was" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

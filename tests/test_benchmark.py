"""benchmarks/bench_training.py: the FLOP counter, and a --quick end-to-end run."""

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import vae_helpers as vh

SCRIPT = ROOT / "benchmarks" / "bench_training.py"
SEED_MACS = 22_554_240  # the issue's "22.5 M multiply-adds forward per image"
KERAS_IO_MACS = 6_660_928
CONFIG_FIELDS = (
    "key",
    "name",
    "epochs",
    "batch_size",
    "optimizer",
    "kl_weight",
    "kl_warmup_epochs",
    "xla",
    "train_images",
    "forward_macs_per_image",
    "forward_macs_per_layer",
    "train_flops_per_image",
    "train_flops_per_epoch",
    "wall_seconds",
    "seconds_per_epoch",
    "median_seconds_per_epoch",
    "steps",
    "step_seconds_total",
    "first_step_seconds",
    "median_step_seconds",
    "outside_steps_seconds",
    "outside_steps_share",
    "gflops_per_s",
    "gflops_per_s_wall",
    "gflops_per_s_steady_step",
    "share_of_matmul",
    "share_of_reference_step",
    "share_of_reference_xla_step",
    "test_neg_elbo",
    "test_reconstruction",
    "test_kl",
    "elbo_test_images",
    "test_iw_log_likelihood",
    "test_iw_standard_error",
    "iw_k",
    "iw_images",
    "grid_digits_found",
    "grid_confident_share",
    "score_seconds",
)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


def run_bench(*args, timeout=900):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------
# The FLOP counter
# ----------------------------------------------------------------------------


def test_flop_counter_on_a_tiny_dense_model(bench):
    inputs = vh.keras.Input(shape=(5,))
    x = vh.layers.Dense(3, activation="relu")(inputs)
    outputs = vh.layers.Dense(2)(x)
    model = vh.keras.Model(inputs, outputs)
    macs = bench.model_macs(model)
    assert sorted(macs.values()) == [2 * 3, 5 * 3]  # biases are not counted
    assert bench.training_flops_per_image(sum(macs.values())) == 21 * 2 * 3


def test_flop_counter_on_dense_over_positions_and_nested_models(bench):
    inner_in = vh.keras.Input(shape=(4, 5))
    inner = vh.keras.Model(inner_in, vh.layers.Dense(3)(inner_in), name="inner")
    inputs = vh.keras.Input(shape=(4, 5))
    model = vh.keras.Model(inputs, vh.layers.Dense(1)(inner(inputs)))
    macs = bench.model_macs(model)
    assert sum(macs.values()) == 4 * 5 * 3 + 4 * 3 * 1
    assert any(name.startswith("inner/") for name in macs)


def test_flop_counter_on_convolutions(bench):
    inputs = vh.keras.Input(shape=(8, 8, 3))
    x = vh.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # -> 4x4x4
    x = vh.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)  # -> 8x8x2
    macs = bench.model_macs(vh.keras.Model(inputs, x))
    # Conv2D: output positions x kernel; transposed: input positions x kernel.
    assert sorted(macs.values()) == sorted(
        [4 * 4 * 3 * 3 * 3 * 4, 4 * 4 * 3 * 3 * 4 * 2]
    )


def test_flop_counter_refuses_layers_it_cannot_count(bench):
    inputs = vh.keras.Input(shape=(4,))
    model = vh.keras.Model(inputs, vh.layers.BatchNormalization()(inputs))
    with pytest.raises(ValueError, match="no FLOP count"):
        bench.model_macs(model)


def test_seed_model_has_the_issues_22_5_million_multiply_adds(bench):
    vae, _, _ = vh.build_vae()
    assert sum(bench.model_macs(vae).values()) == SEED_MACS
    assert SEED_MACS == pytest.approx(22.5e6, rel=0.01)
    keras_io, _, _ = bench.build_keras_io_vae()
    assert sum(bench.model_macs(keras_io).values()) == KERAS_IO_MACS


def test_reference_step_has_the_seed_models_parameters(bench):
    vae, _, _ = vh.build_vae()
    params = bench.reference_parameters()
    count = sum(math.prod(v.shape) for pair in params.values() for v in pair)
    assert count == sum(math.prod(w.shape) for w in vae.trainable_weights)


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, named",
    [
        (["--configs", "a,x"], "--configs"),
        (["--iw-images", "1"], "--iw-images"),
    ],
)
def test_bad_flags_give_one_line(args, named, tmp_path):
    result = run_bench("--quick", "--output-dir", tmp_path / "out", *args, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert lines[0].startswith("bench_training.py: error:")


def test_missing_data_gives_one_line(tmp_path):
    missing = tmp_path / "missing.npz"
    result = run_bench("--quick", "--output-dir", tmp_path, "--data", missing)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST file not found" in lines[0], result.stderr


# ----------------------------------------------------------------------------
# A --quick run
# ----------------------------------------------------------------------------


# The first test to use it also waits for the run (and for the digit
# classifier's training, if it is not cached yet).
QUICK_TIMEOUT = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-quick")
    result = run_bench("--quick", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "training.json").read_text()), result


@QUICK_TIMEOUT
def test_quick_run_records_every_field_for_every_config(quick_run):
    _, report, _ = quick_run
    assert report["complete"] and report["quick"]
    assert list(report["configs"]) == ["a", "b", "c"]
    for key, result in report["configs"].items():
        missing = [field for field in CONFIG_FIELDS if field not in result]
        assert not missing, (key, missing)
        assert result["epochs"] == 1 and result["train_images"] == 1024
        assert len(result["seconds_per_epoch"]) == 1
        assert result["steps"] == math.ceil(1024 / result["batch_size"])
        for field in (
            "wall_seconds",
            "median_seconds_per_epoch",
            "step_seconds_total",
            "first_step_seconds",
            "median_step_seconds",
            "gflops_per_s",
            "gflops_per_s_steady_step",
            "share_of_matmul",
            "share_of_reference_step",
            "score_seconds",
        ):
            assert result[field] > 0 and math.isfinite(result[field]), (key, field)
        assert 0 <= result["outside_steps_share"] < 1
        assert result["step_seconds_total"] <= result["wall_seconds"]
        assert result["train_flops_per_image"] == 6 * result["forward_macs_per_image"]
        assert result["train_flops_per_epoch"] == 1024 * result["train_flops_per_image"]
        assert 50 < result["test_neg_elbo"] < 1000
        assert result["test_neg_elbo"] == pytest.approx(
            result["test_reconstruction"] + result["test_kl"], rel=1e-5
        )
        assert result["elbo_test_images"] == 256
        assert result["iw_k"] == 50 and result["iw_images"] == 16
        assert math.isfinite(result["test_iw_log_likelihood"])
        assert result["test_iw_standard_error"] > 0
        assert set(result["grid_digits_found"]) <= set(range(10))
        assert 0 <= result["grid_confident_share"] <= 1


@QUICK_TIMEOUT
def test_quick_run_counts_the_flops_of_each_model(quick_run):
    _, report, _ = quick_run
    configs = report["configs"]
    assert configs["a"]["forward_macs_per_image"] == SEED_MACS
    assert configs["c"]["forward_macs_per_image"] == SEED_MACS
    assert configs["b"]["forward_macs_per_image"] == KERAS_IO_MACS
    assert report["reference"]["forward_macs_per_image"] == SEED_MACS


@QUICK_TIMEOUT
def test_quick_run_trains_each_configuration_as_specified(quick_run):
    _, report, _ = quick_run
    a, b, c = (report["configs"][k] for k in "abc")
    assert (a["batch_size"], b["batch_size"], c["batch_size"]) == (
        16,
        128,
        vh.DEFAULTS["batch_size"],
    )
    assert a["kl_weight"] == pytest.approx(0.392) and a["kl_warmup_epochs"] == 0
    assert b["kl_weight"] == 1 and c["kl_weight"] == 1
    assert c["kl_warmup_epochs"] == vh.DEFAULTS["kl_warmup_epochs"]
    assert not a["xla"] and c["xla"] == vh.DEFAULTS["xla"]


@QUICK_TIMEOUT
def test_quick_run_records_machine_and_yardsticks(quick_run):
    _, report, _ = quick_run
    machine = report["machine"]
    assert machine["cpu_model"] and machine["cores"] >= 1
    assert report["date"] and report["versions"]["keras"] == vh.keras.__version__
    assert report["matmul"]["n"] == 1024 and report["matmul"]["gflops_per_s"] > 0
    reference = report["reference"]
    assert reference["batch_size"] == vh.DEFAULTS["batch_size"]
    assert reference["gflops_per_s"] > 0
    assert set(reference["variants"]) == {"xla", "no_xla"}
    for variant in reference["variants"].values():
        # An untrained decoder scores about 784·ln 2 nats, like the Keras model.
        assert variant["first_loss"] == pytest.approx(784 * np.log(2), abs=40)
        assert math.isfinite(variant["last_loss"]) and variant["gflops_per_s"] > 0
    assert reference["gflops_per_s"] == max(
        v["gflops_per_s"] for v in reference["variants"].values()
    )
    assert report["timer_overhead_seconds_per_step"] < 1e-4


@QUICK_TIMEOUT
def test_quick_run_writes_a_table_with_one_row_per_config(quick_run):
    out, _, result = quick_run
    table = (out / "training.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| (")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "(a) seed",
        "(b) keras.io",
        "(c) default",
    ]
    header = next(line for line in table.splitlines() if line.startswith("| config"))
    assert all(row.count("|") == header.count("|") for row in rows)
    assert "| (c) default |" in result.stdout  # the table is printed at the end
    assert sorted(p.name for p in out.glob("grid-*.png")) == [
        "grid-a.png",
        "grid-b.png",
        "grid-c.png",
    ]

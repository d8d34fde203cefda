"""benchmarks/bench_training.py: the FLOP counter, its flags, and a --quick run."""

import json
import math
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

import vae_helpers as vh

SCRIPT = ROOT / "benchmarks" / "bench_training.py"
sys.path.insert(0, str(SCRIPT.parent))
import bench_training as bench  # noqa: E402

POSITIVE = (
    "wall_seconds",
    "median_seconds_per_epoch",
    "step_seconds_total",
    "first_step_seconds",
    "median_step_seconds",
    "gflops_per_s",
    "gflops_per_s_wall",
    "gflops_per_s_steady_step",
    "share_of_matmul",
    "share_of_bf16_matmul",
    "share_of_reference_step",
    "share_of_reference_xla_step",
    "test_neg_elbo",
    "test_reconstruction",
    "test_kl",
    "test_iw_standard_error",
    "score_seconds",
    "iw_seconds",
)


def run_bench(*args, timeout=900):
    return run_script(SCRIPT, *args, timeout=timeout)


def finite_positive(value):
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


# ----------------------------------------------------------------------------
# The FLOP counter, on models small enough to count by hand
# ----------------------------------------------------------------------------


def test_flop_counter_on_dense_layers_nested_models_and_positions():
    inner_in = vh.keras.Input(shape=(4, 5))
    inner = vh.keras.Model(inner_in, vh.layers.Dense(3)(inner_in), name="inner")
    inputs = vh.keras.Input(shape=(4, 5))
    model = vh.keras.Model(inputs, vh.layers.Dense(1)(inner(inputs)))
    macs = bench.model_macs(model)
    assert sum(macs.values()) == 4 * 5 * 3 + 4 * 3 * 1  # biases are not counted
    assert any(name.startswith("inner/") for name in macs)


def test_flop_counter_on_convolutions():
    inputs = vh.keras.Input(shape=(8, 8, 3))
    x = vh.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # -> 4x4x4
    x = vh.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)  # -> 8x8x2
    macs = bench.model_macs(vh.keras.Model(inputs, x))
    # Conv2D: output positions x kernel; transposed: input positions x kernel.
    assert sorted(macs.values()) == sorted([16 * 9 * 3 * 4, 16 * 9 * 4 * 2])


def test_flop_counter_refuses_layers_it_cannot_count():
    inputs = vh.keras.Input(shape=(4,))
    model = vh.keras.Model(inputs, vh.layers.BatchNormalization()(inputs))
    with pytest.raises(ValueError, match="no FLOP count"):
        bench.model_macs(model)


def test_flop_count_of_the_book_model_by_hand():
    """Encoder convs at 28x28 / 14x14, dense layers, the decoder's transposed conv."""
    by_hand = (
        28 * 28 * 9 * 1 * 32  # conv 1
        + 14 * 14 * 9 * 32 * 64  # conv 2, stride 2
        + 2 * 14 * 14 * 9 * 64 * 64  # convs 3 and 4
        + 14 * 14 * 64 * 32  # dense
        + 2 * 32 * 2  # z_mean, z_log_var
        + 2 * 14 * 14 * 64  # decoder dense
        + 14 * 14 * 9 * 64 * 32  # transposed conv: input positions
        + 28 * 28 * 9 * 32 * 1  # logits
    )
    vae, _, _ = vh.build_vae()
    assert sum(bench.model_macs(vae).values()) == by_hand


def test_keras_io_model_reads_logits_like_the_book_model():
    vae, encoder, decoder = bench.build_keras_io_vae()
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    z = np.zeros((4, 2), "float32")
    logits = vh.decoder_logits(decoder)(z)
    np.testing.assert_allclose(
        decoder(z), 1 / (1 + np.exp(-np.asarray(logits))), rtol=1e-5, atol=1e-6
    )
    terms = vae(x)  # the book's loss layer: each image's two terms
    assert {name: t.shape for name, t in terms.items()} == {
        "reconstruction": (4,),
        "kl": (4,),
    }
    assert len(encoder(x)) == 2


# ----------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, named",
    [
        (["--configs", "a,x"], "--configs"),
        (["--iw-images", "1"], "--iw-images"),
        (["--iw-k", "0"], "--iw-k"),
    ],
)
def test_bad_flags_give_one_line(args, named, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--quick", *args])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert lines[0].startswith("bench_training.py: error:")


def test_missing_data_gives_one_line(tmp_path):
    result = run_bench("--quick", "--output-dir", tmp_path, "--data", tmp_path / "no")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST file not found" in lines[0], result.stderr


# ----------------------------------------------------------------------------
# A --quick run of all four configurations
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-quick")
    result = run_bench("--quick", "--configs", "a,b,c,d", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (out / "training.json").read_text()
    return out, json.loads(text, parse_constant=lambda c: pytest.fail(c)), result


QUICK_TIMEOUT = pytest.mark.timeout(1200)


@QUICK_TIMEOUT
def test_quick_run_times_and_scores_every_configuration(quick_run):
    _, report, _ = quick_run
    assert report["complete"] and report["quick"]
    assert list(report["configs"]) == ["a", "b", "c", "d"]
    for key, result in report["configs"].items():
        for field in POSITIVE:
            assert finite_positive(result[field]), (key, field, result.get(field))
        assert result["epochs"] == 1 and result["train_images"] == 512
        assert result["steps"] == math.ceil(512 / result["batch_size"])
        assert len(result["seconds_per_epoch"]) == 1
        # Steps happen inside fit(), and the epoch inside its wall time.
        assert result["step_seconds_total"] <= result["seconds_per_epoch"][0]
        assert result["seconds_per_epoch"][0] <= result["wall_seconds"]
        assert 0 < result["outside_steps_share"] < 1
        assert result["iw_share_of_training"] == pytest.approx(
            result["iw_seconds"] / result["wall_seconds"]
        )
        assert result["train_flops_per_image"] == 6 * result["forward_macs_per_image"]
        assert result["test_neg_elbo"] == pytest.approx(
            result["test_reconstruction"] + result["test_kl"], rel=1e-5
        )
        assert result["test_iw_bound"] < 0 and result["iw_images"] == 16
        assert result["test_images"] == 256 and result["iw_k"] == 50
        assert set(result["grid_digits_found"]) <= set(range(10))
        assert 0 <= result["grid_confident_share"] <= 1
        assert vh.RunConfig(**result["config"]).problems() == []


@QUICK_TIMEOUT
def test_quick_run_trains_each_configuration_as_defined(quick_run):
    _, report, _ = quick_run
    configs = report["configs"]
    for key, result in configs.items():
        expected = bench.BENCHES[key].config.to_dict()
        trained = {k: v for k, v in result["config"].items() if k[:3] != "iw_"}
        assert trained == {k: v for k, v in expected.items() if k[:3] != "iw_"}, key
    a, b, c, d = (configs[k] for k in "abcd")
    assert (a["input"], b["input"], c["input"], d["input"]) == (
        "arrays",
        "arrays",
        "tf.data",
        "tf.data",
    )
    assert not any(r["xla"] for r in configs.values())  # "auto" is off on a CPU
    assert d["precision"] == "bfloat16" and c["precision"] == "float32"
    assert a["config"]["epochs"] == 10  # the seed's length, not the default's
    assert c["config"]["epochs"] == d["config"]["epochs"] == vh.DEFAULTS.epochs
    book_macs = sum(bench.model_macs(vh.build_vae()[0]).values())
    assert a["forward_macs_per_image"] == c["forward_macs_per_image"] == book_macs
    assert d["forward_macs_per_image"] == book_macs
    assert b["forward_macs_per_image"] < book_macs / 2  # the smaller keras.io model


@QUICK_TIMEOUT
def test_quick_run_records_machine_and_yardsticks(quick_run):
    _, report, _ = quick_run
    assert report["machine"]["cpu_model"] and "bf16" in report["machine"]
    assert report["versions"]["keras"] == vh.keras.__version__
    for key, dtype in (("matmul", "float32"), ("matmul_bf16", "bfloat16")):
        assert report[key]["dtype"] == dtype and finite_positive(
            report[key]["gflops_per_s"]
        )
    reference = report["reference"]
    assert reference["batch_size"] == vh.DEFAULTS.batch_size
    assert set(reference["variants"]) == {"xla", "no_xla"}
    for variant in reference["variants"].values():
        # An untrained decoder scores about 784·ln 2 nats per image.
        assert variant["first_loss"] == pytest.approx(784 * np.log(2), abs=40)
        assert finite_positive(variant["gflops_per_s"])
    assert reference["gflops_per_s"] == max(
        v["gflops_per_s"] for v in reference["variants"].values()
    )
    c = report["configs"]["c"]
    assert c["share_of_matmul"] == pytest.approx(
        c["gflops_per_s"] / report["matmul"]["gflops_per_s"]
    )


@QUICK_TIMEOUT
def test_quick_run_table_rows_match_the_json(quick_run):
    out, report, result = quick_run
    lines = (out / "training.md").read_text().splitlines()
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in lines if ln[:3] == "| ("]
    assert len(rows) == len(report["configs"])
    column = bench.COLUMNS.index
    for cells, (key, r) in zip(rows, report["configs"].items(), strict=True):
        assert len(cells) == len(bench.COLUMNS)
        assert cells[0] == f"({key}) {r['name']}"
        assert cells[column("wall (s)")] == f"{r['wall_seconds']:.0f}"
        assert cells[column("test −ELBO (β=1)")] == f"{r['test_neg_elbo']:.2f}"
        assert cells[column("precision")] == r["precision"]
    assert "| (d) default bf16 |" in result.stdout  # printed at the end
    assert sorted(p.name for p in out.glob("grid-*.png")) == [
        f"grid-{k}.png" for k in "abcd"
    ]


@QUICK_TIMEOUT
def test_table_mode_rebuilds_the_same_table_from_the_json(quick_run):
    out, _, _ = quick_run
    written = (out / "training.md").read_text()
    (out / "training.md").unlink()
    result = run_bench("--table", "--output-dir", out, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "training.md").read_text() == written


def test_bf16_configuration_runs_by_default_only_where_bf16_is_native(monkeypatch):
    monkeypatch.setattr(vh, "cpu_flags", lambda: {"avx2"})
    keys, skipped = bench.default_configs()
    assert keys == ["a", "b", "c"] and "no native bfloat16" in skipped["d"]
    monkeypatch.setattr(vh, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert bench.default_configs() == (["a", "b", "c", "d"], {})


def test_table_of_the_committed_benchmark_still_renders():
    """The README's table comes from results/bench/training.json (older keys too)."""
    report = json.loads((ROOT / "results" / "bench" / "training.json").read_text())
    table = bench.markdown_report(report)
    for key, result in report["configs"].items():
        assert f"| ({key}) {result['name']} |" in table
        assert f"| {result['test_neg_elbo']:.2f} |" in table


def test_committed_default_benchmark_is_todays_default_in_both_precisions():
    """results/bench-default: what chapter 6 and the README quote for bfloat16."""
    folder = ROOT / "results" / "bench-default"
    report = json.loads((folder / "training.json").read_text())
    assert report["complete"] and not report["quick"]
    assert list(report["configs"]) == ["c", "d"]
    c, d = report["configs"]["c"], report["configs"]["d"]
    assert c["config"] == vh.DEFAULTS.to_dict()  # rerun it when the default changes
    assert d["config"] == {**c["config"], "precision": "bfloat16"}
    assert c["train_images"] == d["train_images"] == 60_000
    for result in (c, d):
        assert result["iw_share_of_training"] == pytest.approx(
            result["iw_seconds"] / result["wall_seconds"]
        )
    readme = (ROOT / "README.md").read_text()
    for line in bench.markdown_report(report).splitlines():
        if line.startswith("| ("):
            assert line in readme, f"README lacks the benchmark row {line[:30]}..."
    assert sorted(p.name for p in folder.glob("grid-*.png")) == [
        "grid-c.png",
        "grid-d.png",
    ]

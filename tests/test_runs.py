"""Whole runs: the staged swap of a run's files, the manifest, and run failures."""

import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import vae_helpers as vh


def write_run(folder, run_id, payload=b"x"):
    """A fake finished run: every run file, the metrics and the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in vh.RUN_FILES:
        if name != "metrics.json":
            (folder / name).write_bytes(payload + name.encode())
    vh.write_json({"run_id": run_id, "config": {}}, folder / "metrics.json")
    vh.write_manifest(folder, run_id)


def test_staged_directory_swaps_a_run_in_whole_and_keeps_other_files(tmp_path):
    out = tmp_path / "vae"
    write_run(out, "old")
    (out / "train.log").write_text("a log a user tees here")
    with vh.staged_directory(out, keep=(*vh.RUN_FILES, vh.MANIFEST)) as stage:
        write_run(stage, "new", payload=b"y")
        assert vh.check_run(out)["run_id"] == "old"  # untouched until the end
    assert vh.check_run(out)["run_id"] == "new"
    assert (out / "train.log").read_text() == "a log a user tees here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]  # no leftovers


@pytest.mark.parametrize("stage_files", [0, 2, 5])
def test_an_interrupt_while_staging_leaves_the_old_run(tmp_path, stage_files):
    out = tmp_path / "vae"
    write_run(out, "old")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with (
        pytest.raises(KeyboardInterrupt),
        vh.staged_directory(out, keep=vh.RUN_FILES) as stage,
    ):
        for name in [*vh.RUN_FILES, vh.MANIFEST][:stage_files]:
            (stage / name).write_bytes(b"half")
        raise KeyboardInterrupt
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]


def test_check_run_refuses_mixed_or_partial_runs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_run(first, "one")
    write_run(second, "two", payload=b"other")
    assert vh.check_run(first)["run_id"] == "one"
    # grid.png from another run
    (first / "grid.png").write_bytes((second / "grid.png").read_bytes())
    with pytest.raises(vh.IncompleteRun, match=r"grid\.png is missing or not this run"):
        vh.check_run(first)
    # metrics of another run, with a manifest naming them
    write_run(first, "one")
    (first / "metrics.json").write_bytes((second / "metrics.json").read_bytes())
    vh.write_json(
        {
            "run_id": "one",
            "files": {n: vh.sha256(first / n) for n in vh.RUN_FILES},
        },
        first / vh.MANIFEST,
    )
    with pytest.raises(vh.IncompleteRun, match="belongs to another run"):
        vh.check_run(first)
    # no manifest: an old or half-written folder
    (first / vh.MANIFEST).unlink()
    with pytest.raises(vh.IncompleteRun, match="no finished run"):
        vh.check_run(first)


def test_load_or_train_retrains_instead_of_mixing(tmp_path, monkeypatch, capsys):
    write_run(tmp_path, "one")
    (tmp_path / "history.json").write_text("{}")  # not the manifest's file
    calls = []
    monkeypatch.setattr(vh, "train_and_save", lambda **kw: calls.append(kw))
    vh.load_or_train(tmp_path)
    assert calls == [{"output_dir": tmp_path, "data": None}]
    assert "history.json is missing or not this run's" in capsys.readouterr().out


def test_json_is_strict(tmp_path):
    with pytest.raises(ValueError):
        vh.write_json({"standard_error": float("nan")}, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_settings_the_code_cannot_take_are_named():
    config = dataclasses.replace(
        vh.DEFAULTS, seed=-1, iw_images=1, latent_dim=1, kl_cycles=0
    )
    problems = config.problems()
    assert [p.split(":")[0] for p in problems] == [
        "--latent-dim",
        "--kl-cycles",
        "--seed",
        "--iw-images",
    ]
    assert vh.DEFAULTS.problems() == []
    with pytest.raises(vh.ConfigError, match="--latent-dim: must be at least 2"):
        vh.train_and_save(config)


@pytest.fixture(scope="module")
def fast_env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(vh.FAST_ENV, "1")
        yield


def test_a_diverging_run_raises_and_writes_nothing(tmp_path, fast_env):
    out = tmp_path / "vae"
    write_run(out, "old")
    config = dataclasses.replace(
        vh.DEFAULTS, learning_rate=1e30, lr_warmup_epochs=0.0, iw_k=0, grid_check=False
    )
    with pytest.raises(vh.TrainingDiverged, match="NaN or infinite in epoch 1"):
        vh.train_and_save(config, out, verbose=0)
    assert vh.check_run(out)["run_id"] == "old"


def test_compile_for_run_lays_the_schedule_over_the_run():
    vae, _, _ = vh.build_vae(2)
    vh.compile_for_run(vae, 1000, epochs=3, batch_size=64, lr_warmup_epochs=0.5)
    schedule = vae.optimizer._learning_rate
    steps = 3 * math.ceil(1000 / 64)  # 48: the last batch of 40 is a step too
    warmup = round(0.5 * 16)
    assert schedule.warmup_steps == warmup
    assert schedule.decay_steps == steps - warmup
    assert float(schedule(warmup)) == pytest.approx(vh.DEFAULTS.learning_rate)
    assert float(schedule(steps)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "ramp_epochs, cycles, betas",
    [
        (1.0, 1, np.arange(8) / 8),
        (0.25, 2, [0, 0.5, 1, 1, 0, 0.5, 1, 1]),  # cyclical: the ramp restarts
    ],
)
def test_the_kl_ramp_reaches_the_compiled_training_step(ramp_epochs, cycles, betas):
    """β must change inside fit's compiled step, not only in Python."""
    vh.keras.utils.set_random_seed(0)
    vae, encoder, _ = vh.build_vae(2, seed=0)
    head = encoder.get_layer("z_mean")  # codes far from the prior: KL ≈ 100
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 0, bias * 0 + 10.0])
    vh.compile_vae(vae, 1e-12)  # the model stays put; only β moves
    seen = []

    class Probe(vh.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((logs["loss"], logs["reconstruction"], logs["kl"]))

    x = np.random.default_rng(0).random((8 * 16, 28, 28, 1)).astype("float32")
    vh.train_vae(
        vae,
        x,
        epochs=1,
        batch_size=16,
        kl_warmup_epochs=ramp_epochs,
        kl_cycles=cycles,
        verbose=0,
        callbacks=[Probe()],
    )
    # Keras logs running means over the epoch; undo them for each step's terms.
    totals = np.asarray(seen, "float64") * np.arange(1, len(seen) + 1)[:, None]
    loss, reconstruction, kl = np.diff(totals, axis=0, prepend=0).T
    np.testing.assert_allclose((loss - reconstruction) / kl, betas, atol=0.01)


@pytest.mark.skipif(not shutil.which("taskset"), reason="needs util-linux taskset")
def test_a_run_pinned_to_one_core_records_one_core_used():
    probe = "import vae_helpers as vh; m = vh.machine(); print(m['cores_used'])"
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.split() == ["1"]
    assert vh.machine()["cores"] >= vh.machine()["cores_used"] >= 1


def record(folder, run_id, config, neg_elbo=140.0, manifest_id=None):
    """A committed run's record: metrics.json and the manifest, no weights."""
    folder.mkdir(parents=True)
    metrics = {"run_id": run_id, "config": config, "test_neg_elbo": neg_elbo}
    vh.write_json(metrics, folder / "metrics.json")
    vh.write_json({"run_id": manifest_id or run_id, "files": {}}, folder / vh.MANIFEST)


def test_default_seed_runs_keeps_the_defaults_with_any_seed_and_nothing_else(tmp_path):
    default = vh.DEFAULTS.to_dict()
    screens = tmp_path / "results" / "seed-screen"
    record(screens / "a", "a", default | {"seed": 7}, 141.0)
    record(screens / "b", "b", default | {"seed": 8, "kl_weight": 0.75})
    record(screens / "c", "c", default | {"seed": 9}, manifest_id="other run")
    old = {k: v for k, v in default.items() if k != "kl_cycles"}  # before the flag
    record(tmp_path / "results" / "study" / "seed-5", "d", old | {"seed": 5}, 142.0)
    runs = vh.default_seed_runs(root=tmp_path)
    assert {seed: m["test_neg_elbo"] for seed, m in runs.items()} == {
        7: 141.0,
        5: 142.0,
    }
    longer = dataclasses.replace(vh.DEFAULTS, epochs=vh.DEFAULTS.epochs + 1)
    assert vh.default_seed_runs(longer, root=tmp_path) == {}


def test_the_committed_ten_epoch_default_runs_are_the_studys_five_seeds():
    ten = dataclasses.replace(vh.DEFAULTS, epochs=10)
    runs = vh.default_seed_runs(ten)
    summary = json.loads((ROOT / "results" / "study" / "summary.json").read_text())
    spread = summary["seeds"]["test_neg_elbo"]
    assert len(runs) == spread["n"] == 5
    elbo = [m["test_neg_elbo"] for m in runs.values()]
    assert np.mean(elbo) == pytest.approx(spread["mean"])

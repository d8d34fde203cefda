"""benchmarks/study.py: binarised pixels, a --quick study, resuming it, its table."""

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

import vae_helpers as vh

SCRIPT = ROOT / "benchmarks" / "study.py"
sys.path.insert(0, str(SCRIPT.parent))
import study  # noqa: E402

QUICK_RUNS = ("default", "binarised")
LEVELS = np.array([0.0, 0.25, 0.5, 0.9, 1.0], dtype=np.float32)


def strict_json(path):
    """Parses like a strict reader: NaN or Infinity fail."""

    def refuse(constant):
        raise ValueError(f"{path}: non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def run_study(*args, timeout=600):
    return run_script(SCRIPT, *args, timeout=timeout)


# ----------------------------------------------------------------------------
# Binarised MNIST
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grey_images():
    """512 images whose pixels take five known intensities, 0 and 1 included."""
    rng = np.random.default_rng(2026)  # not a draw seed: its stream would correlate
    return LEVELS[rng.integers(0, len(LEVELS), (512, 28, 28, 1))]


def epochs_of(dataset, epochs):
    """Each epoch's images, concatenated in order (one new iterator per epoch)."""
    return [np.concatenate([b.numpy() for b in dataset]) for _ in range(epochs)]


def assert_bernoulli(draws, intensities):
    """0/1 only, and at each intensity the share of ones matches it."""
    assert set(np.unique(draws)) <= {0.0, 1.0}
    for level in LEVELS:
        share = draws[intensities == level].mean()
        assert share == pytest.approx(level, abs=0.01), level


def test_training_batches_are_fresh_bernoulli_draws_every_epoch(grey_images):
    batches = study.binarised_batches(vh.image_batches(grey_images, 64), seed=3)
    first, second = epochs_of(batches, 2)
    for draws in (first, second):
        assert draws.shape == grey_images.shape
        assert_bernoulli(draws, grey_images)
    grey = (grey_images > 0) & (grey_images < 1)
    assert (first[grey] != second[grey]).mean() > 0.2  # new draws each epoch


def test_training_draws_repeat_with_the_seed_and_change_without(grey_images):
    def first_epoch(seed):
        dataset = study.binarised_batches(vh.image_batches(grey_images, 64), seed)
        return epochs_of(dataset, 1)[0]

    np.testing.assert_array_equal(first_epoch(3), first_epoch(3))
    assert not np.array_equal(first_epoch(3), first_epoch(4))


def test_the_test_set_is_one_fixed_draw(grey_images):
    once, again = (study.binarise(grey_images, study.TEST_DRAW_SEED) for _ in "12")
    np.testing.assert_array_equal(once, again)
    assert_bernoulli(once, grey_images)
    assert not np.array_equal(once, study.binarise(grey_images, 1))
    np.testing.assert_array_equal(study.binarise(once, 5), once)  # 0/1 stay put


def test_binarised_run_wraps_the_modules_data_calls_and_restores_them(good_npz):
    load, batches = vh.load_mnist, vh.image_batches
    with study.binarised_mnist(seed=1):
        (x_train, _), (x_test, _) = vh.load_mnist(good_npz)
        first = next(iter(vh.image_batches(x_train[:256], 128, shuffle_seed=1)))
    assert set(np.unique(x_test)) == {0.0, 1.0}
    assert len(np.unique(x_train)) > 2  # the training set is drawn per batch
    assert set(np.unique(first.numpy())) == {0.0, 1.0}
    assert (vh.load_mnist, vh.image_batches) == (load, batches)


# ----------------------------------------------------------------------------
# The runs and the command line
# ----------------------------------------------------------------------------


def test_each_run_varies_one_setting_of_the_default():
    assert len(study.RUNS) == 12
    default = vh.DEFAULTS.to_dict()
    for name, run in study.RUNS.items():
        config = study.run_config(run, quick=False).to_dict()
        changed = {k for k in config if config[k] != default[k]}
        assert changed == set(run.changes), name
        assert len(changed) <= 1, name
    seeds = {study.run_config(r, False).seed for r in study.RUNS.values()}
    assert vh.DEFAULTS.seed in seeds and len(seeds) == 5


def test_unknown_run_name_gives_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        study.parse_args(["--only", "default,nope"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0], lines
    assert lines[0].startswith("study.py: error:")


def test_seed_summary_is_mean_and_sample_spread():
    rows = {
        f"s{seed}": {
            "groups": ["seeds"],
            "seed": seed,
            "test_neg_elbo": value,
            "grid_digits_held": list(range(10 if seed else 9)),
        }
        for seed, value in [(0, 144.0), (1, 146.0), (2, 148.0)]
    }
    summary = study.seed_summary(rows | {"x": {"groups": ["beta"]}})
    elbo = summary["test_neg_elbo"]
    assert (elbo["n"], elbo["mean"], elbo["std"]) == (3, 146.0, 2.0)
    assert (elbo["min"], elbo["max"]) == (144.0, 148.0)
    assert summary["seeds_with_all_ten_digits"] == 2


# ----------------------------------------------------------------------------
# A --quick study of two runs, resumed
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study-quick")
    result = run_study("--quick", "--only", ",".join(QUICK_RUNS), "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.timeout(900)
def test_quick_study_writes_each_run_and_a_strict_summary(quick_study):
    out, _ = quick_study
    summary = strict_json(out / "summary.json")
    assert summary["quick"] and not summary["complete"]
    assert list(summary["runs"]) == list(QUICK_RUNS)
    assert set(summary["missing"]) == set(study.RUNS) - set(QUICK_RUNS)
    assert summary["machine"]["cpu_model"] and "bf16" in summary["machine"]
    assert summary["versions"]["keras"] == vh.keras.__version__
    # every run records its machine, so a study mixed across CPUs shows it
    bf16 = ", ".join(vh.machine()["native_bf16"]) or "none"
    assert summary["run_machines"] == [f"{vh.cpu_model()} (native bf16: {bf16})"]
    assert (
        f"trained on 1 machine(s): {summary['run_machines'][0]}"
        in (out / "summary.md").read_text()
    )
    for name, row in summary["runs"].items():
        metrics = vh.check_run(out / name)  # train_and_save's files, whole
        assert row == strict_json(out / name / study.ROW)
        assert row["run_id"] == metrics["run_id"] and row["fast_mode"]
        assert row["epochs"] == 1 and row["iw_k"] == study.QUICK_IW_K
        for key in ("test_reconstruction", "test_kl", "test_neg_elbo", "run_seconds"):
            assert row[key] > 0 and math.isfinite(row[key]), (name, key)
        assert row["test_neg_elbo"] == pytest.approx(
            row["test_reconstruction"] + row["test_kl"], rel=1e-5
        )
        assert math.isfinite(row["test_iw_bound"]) and row["test_iw_bound"] < 0
        assert sum(row["grid_confident_cells_per_digit"]) <= 15 * 15
    assert summary["runs"]["binarised"]["binarised"]
    assert not summary["runs"]["default"]["binarised"]
    assert summary["total_run_seconds"] == pytest.approx(
        sum(r["run_seconds"] for r in summary["runs"].values())
    )


@pytest.mark.timeout(900)
def test_quick_study_keeps_each_runs_test_codes_for_the_chapter(quick_study):
    out, _ = quick_study
    _, (_, y_test) = vh.load_mnist()
    n = min(study.CODE_IMAGES, len(y_test))
    codes = {}
    for name in QUICK_RUNS:
        with np.load(out / name / study.CODES) as file:
            assert str(file["run_id"]) == vh.check_run(out / name)["run_id"]
            np.testing.assert_array_equal(file["labels"], y_test[:n])
            codes[name] = file["z_mean"]
        assert codes[name].shape == (n, vh.DEFAULTS.latent_dim)
        assert np.isfinite(codes[name]).all() and codes[name].std(0).min() > 0.01
    assert not np.allclose(codes["default"], codes["binarised"])
    before = (out / "default" / study.CODES).stat().st_mtime_ns
    study.ensure_codes("default", out / "default", vh.check_run(out / "default"))
    assert (out / "default" / study.CODES).stat().st_mtime_ns == before  # kept


@pytest.mark.timeout(900)
def test_quick_study_table_rows_match_the_json(quick_study):
    out, result = quick_study
    summary = strict_json(out / "summary.json")
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in (out / "summary.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| run |", "| --- |"))
    ]
    assert [r[0] for r in rows] == list(summary["runs"])
    header = study.COLUMNS
    for cells, row in zip(rows, summary["runs"].values(), strict=True):
        assert len(cells) == len(header)
        assert cells[header.index("−ELBO")] == f"{row['test_neg_elbo']:.2f}"
        assert cells[header.index("pixels")] == (
            "binarised" if row["binarised"] else "grey"
        )
    assert "| default |" in result.stdout  # the table is printed at the end


@pytest.mark.timeout(900)
def test_rebuilt_table_equals_the_written_one(quick_study):
    out, _ = quick_study
    before = strict_json(out / "summary.json")
    (out / "summary.json").unlink()
    after = study.build_table(out, quick=True, classifier_of=None)  # no retraining
    assert after["runs"] == before["runs"]
    assert strict_json(out / "summary.json")["runs"] == before["runs"]


@pytest.mark.timeout(900)
def test_resume_skips_finished_runs_and_redoes_a_broken_one(quick_study):
    out, _ = quick_study
    ids = {name: vh.check_run(out / name)["run_id"] for name in QUICK_RUNS}
    (out / "binarised" / "grid.png").unlink()  # as if interrupted mid-write
    result = run_study("--quick", "--only", ",".join(QUICK_RUNS), "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"default: finished before (run {ids['default'][:8]}); skipped" in (
        result.stdout
    )
    assert vh.check_run(out / "default")["run_id"] == ids["default"]
    redone = vh.check_run(out / "binarised")["run_id"]
    assert redone != ids["binarised"]
    summary = strict_json(out / "summary.json")
    assert summary["runs"]["binarised"]["run_id"] == redone


def test_a_run_of_other_settings_is_not_taken_as_finished(tmp_path, monkeypatch):
    metrics = {"config": vh.DEFAULTS.to_dict(), "fast_mode": True, "run_id": "x"}
    monkeypatch.setattr(vh, "check_run", lambda folder: metrics)
    other = dataclasses.replace(vh.DEFAULTS, kl_weight=4.0)
    assert study.finished_run(tmp_path, vh.DEFAULTS, quick=True) is metrics
    assert study.finished_run(tmp_path, other, quick=True) is None
    assert study.finished_run(tmp_path, vh.DEFAULTS, quick=False) is None

"""benchmarks/bench_backends.py: one process per backend, medians over rounds."""

import json
import sys

import pytest
from conftest import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "bench_backends.py"
sys.path.insert(0, str(SCRIPT.parent))
import bench_backends  # noqa: E402


def fake_run(backend, seconds, matmul=None):
    run = {
        "backend": backend,
        "versions": {"tensorflow": "2.x", backend: "1.0"},
        "seconds_per_step": seconds,
        "first_epoch_seconds": 10 * seconds,
        "gflops_per_s": 1.0 / seconds,
        "final_loss": 200.0,
        "jit_compile": backend == "jax",
    }
    if matmul:
        run["matmul"] = {"gflops_per_s": matmul}
    return run


def test_each_backend_takes_its_median_over_rounds_and_is_set_against_tf():
    rounds = [
        [fake_run("tensorflow", s, 100.0), fake_run("jax", 2 * s), fake_run("torch", j)]
        for s, j in [(0.010, 0.011), (0.030, 0.013), (0.020, 0.012)]
    ]
    summary = bench_backends.summarize(rounds)
    rows = summary["backends"]
    assert rows["tensorflow"]["seconds_per_step"] == pytest.approx(0.020)
    assert rows["jax"]["time_vs_tensorflow"] == pytest.approx(2.0)
    assert rows["torch"]["seconds_per_step"] == pytest.approx(0.012)
    assert rows["torch"]["share_of_matmul"] == pytest.approx(
        rows["torch"]["gflops_per_s"] / 100.0
    )
    assert all(row["rounds"] == 3 for row in rows.values())


@pytest.mark.timeout(900)
def test_quick_run_measures_every_backend_in_its_own_process(tmp_path):
    result = run_script(SCRIPT, "--quick", "--output-dir", tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "backends.json").read_text())
    assert set(report["backends"]) == set(bench_backends.BACKENDS)
    for name, row in report["backends"].items():
        assert row["versions"]["backend"] == name  # the variable reached Keras
        assert row["seconds_per_step"] > 0 and row["gflops_per_s"] > 0
    assert report["backends"]["jax"]["jit_compile"]  # JAX never runs op by op
    table = (tmp_path / "backends.md").read_text()
    assert all(f"| {name} |" in table for name in bench_backends.BACKENDS)


def test_bad_rounds_give_one_line(tmp_path):
    result = run_script(SCRIPT, "--rounds", "0", "--output-dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bench_backends.py: error: --rounds must be >= 1, --images >= 64"
    ]

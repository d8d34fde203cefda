"""benchmarks/compare_precision.py: two precisions over seeds, from metrics.json."""

import json
import math
import statistics

import pytest
from conftest import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "compare_precision.py"


def fake_run(folder, seed, precision, neg_elbo, cells_of_4=5):
    folder.mkdir(parents=True)
    cells = [5] * 10
    cells[4] = cells_of_4
    metrics = {
        "config": {"seed": seed},
        "precision_used": precision,
        "test_neg_elbo": neg_elbo,
        "test_reconstruction": neg_elbo - 6.0,
        "test_kl": 6.0 + seed / 1000,
        "test_iw_bound": 3.0 - neg_elbo,
        "grid_confident_cells_per_digit": cells,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_means_their_difference_and_held_digits(tmp_path):
    fp32 = [145.0, 146.0, 147.0]
    bf16 = [146.0, 147.5, 146.5, 148.0]
    a = [fake_run(tmp_path / f"f{i}", i, "float32", v) for i, v in enumerate(fp32)]
    b = [
        fake_run(tmp_path / f"b{i}", i, "bfloat16", v, cells_of_4=2 if i else 3)
        for i, v in enumerate(bf16)
    ]
    out = tmp_path / "out"
    done = run_script(
        SCRIPT, "--float32", *a, "--bfloat16", *b, "--output-dir", out, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "summary.json").read_text())
    row = report["comparison"]["scores"]["test_neg_elbo"]
    assert row["difference"] == pytest.approx(statistics.fmean(bf16) - 146.0)
    expected = math.sqrt(statistics.variance(fp32) / 3 + statistics.variance(bf16) / 4)
    assert row["standard_error"] == pytest.approx(expected)
    assert report["comparison"]["all_ten_digits"] == {"float32": 3, "bfloat16": 1}
    assert report["bfloat16"][1]["digits_held"] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    table = (out / "summary.md").read_text()
    assert "| test_neg_elbo | 146.00 ± 1.00 |" in table


def test_a_run_in_the_wrong_precision_is_one_line_and_writes_nothing(tmp_path):
    a = [fake_run(tmp_path / f"f{i}", i, "float32", 145.0 + i) for i in range(2)]
    wrong = fake_run(tmp_path / "b0", 0, "float32", 146.0)
    out = tmp_path / "out"
    done = run_script(
        SCRIPT, "--float32", *a, "--bfloat16", wrong, "--output-dir", out, timeout=300
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"compare_precision.py: error: {wrong}: trained in float32"
    ]
    assert not out.exists()
    missing = run_script(
        SCRIPT, "--float32", *a, "--bfloat16", tmp_path / "nope", timeout=300
    )
    assert missing.returncode == 2 and "no readable metrics.json" in missing.stderr


def test_reads_the_cells_a_study_run_keeps_in_its_summary(tmp_path):
    study = fake_run(tmp_path / "study", 7, "float32", 146.0, cells_of_4=1)
    metrics = json.loads((study / "metrics.json").read_text())
    cells = metrics.pop("grid_confident_cells_per_digit")
    (study / "metrics.json").write_text(json.dumps(metrics))
    (study / "summary.json").write_text(
        json.dumps({"grid_confident_cells_per_digit": cells})
    )
    b = fake_run(tmp_path / "b7", 7, "bfloat16", 146.5)
    out = tmp_path / "out"
    done = run_script(
        SCRIPT, "--float32", study, "--bfloat16", b, "--output-dir", out, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "summary.json").read_text())
    assert report["float32"][0]["digits_held"] == [0, 1, 2, 3, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "summary",
    sorted((ROOT / "results" / "precision").glob("**/summary.json")),
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_committed_comparisons_are_what_their_runs_give(summary, tmp_path):
    """Each committed summary, recomputed from the run folders it names."""
    report = json.loads(summary.read_text())
    folders = {
        p: [ROOT / run["folder"] for run in report[p]] for p in ("float32", "bfloat16")
    }
    done = run_script(
        SCRIPT,
        "--float32",
        *folders["float32"],
        "--bfloat16",
        *folders["bfloat16"],
        "--output-dir",
        tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["comparison"] == report["comparison"]
    assert (
        again["float32"] == report["float32"]
        and again["bfloat16"] == report["bfloat16"]
    )

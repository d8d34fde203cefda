"""benchmarks/iw_share.py: the IW bound's share of a default run, and its layers."""

import json
import sys

import pytest
from conftest import ROOT, run_script

import vae_helpers as vh

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_training import layer_macs

SCRIPT = ROOT / "benchmarks" / "iw_share.py"


def test_the_decoders_flops_add_up_to_what_the_readme_says_a_decode_costs():
    decoder = vh.decoder_logits(vh.build_decoder(2))
    total = 2 * sum(layer_macs(x) for x in decoder.layers[1:])
    assert total / 1e6 == pytest.approx(7.7, abs=0.05)  # 10^6 decodes: 7.7 TFLOP


def test_quick_run_writes_a_share_that_is_its_two_times_divided(tmp_path):
    done = run_script(SCRIPT, "--quick", "--output-dir", tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "iw-share.json").read_text())
    assert report["iw_share"] == pytest.approx(
        report["iw_seconds_per_run"] / report["train_seconds_per_run"]
    )
    assert report["run_steps"] == vh.DEFAULTS.epochs * 1875
    names = [row["layer"] for row in report["layers"]]
    assert names[1:] == [
        "conv2d_transpose",
        "logits",
        "logits as a depthwise conv and a channel sum",
    ]
    assert all(row["gflops"] > 0 for row in report["layers"])
    for row in report["layers"]:  # each timed computation is its layer's
        assert row["max_difference_from_layer"] < 1e-4, row
    assert "of training** (target 10%)" in (tmp_path / "iw-share.md").read_text()


def test_refuses_a_count_below_one_in_one_line(tmp_path):
    done = run_script(SCRIPT, "--steps", "0", "--output-dir", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "iw_share.py: error: --steps must be at least 1"
    ]
    assert not (tmp_path / "iw-share.json").exists()

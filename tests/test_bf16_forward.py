"""benchmarks/bf16_forward.py: one model's −ELBO with each part in bfloat16."""

import json
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

import vae_helpers as vh

sys.path.insert(0, str(ROOT / "benchmarks"))
import bf16_forward

SCRIPT = ROOT / "benchmarks" / "bf16_forward.py"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    vae, _, _ = vh.build_vae(2, seed=0)
    # larger than initial weights, so that the decoder's pixels vary with z
    # and bfloat16's rounding reaches the score
    vae.set_weights([2 * w for w in vae.get_weights()])
    path = tmp_path_factory.mktemp("model") / "vae.weights.h5"
    vh.save_weights(vae, path)
    return path


def test_the_float32_row_is_the_books_estimate_and_bf16_rows_are_close(weights):
    x = np.random.default_rng(0).random((40, 28, 28, 1)).astype("float32")
    measured = bf16_forward.measure(vh, weights, x)
    vae, encoder, decoder = vh.build_vae(2, seed=0)
    vh.load_weights(vae, weights)
    rows = measured["neg_elbo"]
    assert rows["all float32"] == pytest.approx(
        vh.evaluate_elbo(encoder, decoder, x)["neg_elbo"], rel=1e-6
    )
    assert len(rows) == 5 and len(set(rows.values())) > 1  # bf16 does round
    for value in rows.values():
        assert value == pytest.approx(rows["all float32"], rel=0.01)
    assert 0 < measured["bfloat16_spacing_at_median"] < measured["median_abs_z_mean"]


def test_writes_its_report_and_refuses_a_missing_file_in_one_line(weights, tmp_path):
    out = tmp_path / "out"
    done = run_script(
        SCRIPT, "--weights", weights, "--images", 50, "--output-dir", out, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "forward.json").read_text())
    assert report["images"] == 50 and "all float32" in report["neg_elbo"]
    assert "| encoder in bfloat16 |" in (out / "forward.md").read_text()
    missing = run_script(SCRIPT, "--weights", tmp_path / "no.h5", "--output-dir", out)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"bf16_forward.py: error: {tmp_path / 'no.h5'}: no such weights file"
    ]

"""The browser explorer's export (vae_explorer.py) and its forward pass in Node.

The JavaScript forward pass (book/explorer/vae_explorer.js) must compute what
Keras computes: this exports a freshly built model, with random biases so the
bias path is exercised too, and Keras' outputs for fixed inputs, then runs
tests/js/forward.test.js under `node --test` on them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from conftest import ROOT

import vae_explorer as vx
import vae_helpers as vh

NODE_TEST = ROOT / "tests" / "js" / "forward.test.js"
TOLERANCE = vx.TOLERANCE  # 1e-4 per pixel and per latent value (issue 13)


def with_random_biases(model, rng):
    """Keras initialises biases to 0; random ones make a dropped bias visible."""
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            kernel, bias = weights
            layer.set_weights(
                [kernel, rng.normal(0, 0.1, bias.shape).astype("float32")]
            )
    return model


def fixed_latents():
    """A 5 x 5 grid over [-3, 3]^2 (the explorer's plane) and 3 random codes."""
    axis = np.linspace(-3, 3, 5)
    grid = np.array([(a, b) for a in axis for b in axis])
    extra = np.random.default_rng(1).normal(0, 1.5, (3, 2))
    return np.concatenate([grid, extra]).astype("float32")


def sample_images(count=24):
    """The first test digits when MNIST is at hand, else sparse random strokes."""
    try:
        (_, _), (x_test, _) = vh.load_mnist()
        return x_test[:count].astype("float32")
    except Exception:  # no data here: the pass is tested on synthetic ink
        rng = np.random.default_rng(2)
        ink = rng.random((count, 28, 28, 1)) < 0.2
        return (ink * rng.random(ink.shape)).astype("float32")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    encoder = with_random_biases(vh.build_encoder(2), rng)
    decoder = with_random_biases(vh.build_decoder(2), rng)
    return encoder, decoder


def run_node(cases: dict, tmp_path) -> tuple[subprocess.CompletedProcess, dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node not found: the explorer's test needs Node.js 20", pytrace=False
        )
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases, allow_nan=False))
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(NODE_TEST)],
        env={**os.environ, "VAE_EXPLORER_CASES": str(path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = {
        row["name"]: row
        for row in map(json.loads, re.findall(r"RESULT (\{.*\})", result.stdout))
    }
    return result, found


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_javascript_forward_pass_matches_keras(model, tmp_path, dtype):
    """float16: the same weights, rounded, in Keras and in the browser's pass."""
    encoder, decoder = model
    saved = [m.get_weights() for m in model]
    if dtype == "float16":
        for m in model:
            m.set_weights(
                [w.astype("float16").astype("float32") for w in m.get_weights()]
            )
    try:
        latents = fixed_latents()
        images = sample_images()
        z_mean, z_log_var = encoder.predict(images, verbose=0)
        decoded = decoder.predict(latents, verbose=0).reshape(len(latents), -1)
        spec = vx.model_spec(encoder, decoder, dtype, dtype)
    finally:
        for m, weights in zip(model, saved, strict=True):
            m.set_weights(weights)
    cases = {
        "model": spec,
        "latents": latents.tolist(),
        "decoded": decoded.tolist(),
        "images": images.reshape(len(images), -1).tolist(),
        "z_mean": z_mean.tolist(),
        "z_log_var": z_log_var.tolist(),
        "tolerance": TOLERANCE,
    }
    result, found = run_node(cases, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert set(found) == {"decoder", "z_mean", "z_log_var"}, result.stdout[-2000:]
    for name, row in found.items():
        print(f"{dtype} {name}: max |JS - Keras| = {row['max_abs_diff']:.2e}")
        assert row["max_abs_diff"] <= TOLERANCE


def test_half_precision_error_and_the_shipping_choice(model):
    _, decoder = model
    error = vx.half_precision_error(decoder, fixed_latents())
    assert 0 < error < 0.05  # rounding moves the outputs, a little
    assert vx.shipping_dtype(error, tolerance=error) == "float16"
    assert vx.shipping_dtype(error, tolerance=error / 2) == "float32"
    before = decoder.get_weights()[0].copy()
    vx.half_precision_error(decoder, fixed_latents())
    np.testing.assert_array_equal(decoder.get_weights()[0], before)  # restored


def test_node_test_fails_on_a_wrong_weight(model, tmp_path):
    """The comparison can fail: one changed weight makes the decoder disagree."""
    encoder, decoder = model
    spec = vx.model_spec(encoder, decoder)
    conv = spec["decoder"]["layers"][2]
    assert conv["type"] == "conv2d_transpose"
    kernel = np.frombuffer(vx.base64.b64decode(conv["kernel"]), "<f4").copy()
    kernel[0] += 0.5
    conv["kernel"] = vx.b64(kernel, "float32")
    latents = fixed_latents()
    cases = {
        "model": spec,
        "latents": latents.tolist(),
        "decoded": decoder.predict(latents, verbose=0)
        .reshape(len(latents), -1)
        .tolist(),
        "images": [[0.0] * 784] * 20,
        "z_mean": encoder.predict(np.zeros((20, 28, 28, 1)), verbose=0)[0].tolist(),
        "z_log_var": encoder.predict(np.zeros((20, 28, 28, 1)), verbose=0)[1].tolist(),
        "tolerance": TOLERANCE,
    }
    result, found = run_node(cases, tmp_path)
    assert result.returncode != 0
    assert found["decoder"]["max_abs_diff"] > TOLERANCE


def test_layer_spec_refuses_what_the_browser_cannot_run():
    inputs = keras.Input((28, 28, 1))
    valid = keras.layers.Conv2D(4, 3, padding="valid")
    valid(inputs)
    with pytest.raises(ValueError, match="padding"):
        vx.layer_spec(valid)
    norm = keras.layers.BatchNormalization()
    norm(inputs)
    with pytest.raises(ValueError, match="BatchNormalization"):
        vx.layer_spec(norm)


def test_explorer_html_embeds_script_and_data(model):
    encoder, decoder = model
    images = sample_images(30)
    labels = np.arange(30) % 10
    data = vx.explorer_data(encoder, decoder, images, labels)
    html = vx.explorer_html(data, element_id="vx-test")
    assert html.count("<script>") == 2
    assert html.count("</script>") == 2  # no early end inside script or data
    assert 'id="vx-test"' in html
    payload = html.split("window.VAE_EXPLORER_DATA = ", 1)[1].split(";\n", 1)[0]
    parsed = json.loads(payload)
    assert parsed["examples"]["labels"] == list(range(10))
    assert len(vx.base64.b64decode(parsed["scatter"]["z"])) == 30 * 2 * 2  # float16
    decoded_bytes = vx.weight_bytes(parsed["model"]["decoder"])
    assert decoded_bytes == 4 * decoder.count_params()
    assert vx.weight_bytes(parsed["model"]["encoder"]) == 4 * encoder.count_params()


def test_read_latency_is_none_without_a_benchmark(tmp_path):
    assert vx.read_latency(tmp_path / "missing.json") is None
    (tmp_path / "latency.json").write_text('{"decode_ms": {"median": 3.0}}')
    assert vx.read_latency(tmp_path / "latency.json")["decode_ms"]["median"] == 3.0

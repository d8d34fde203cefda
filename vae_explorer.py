"""The trained VAE in the reader's browser: the weights and data chapter 8's page needs.

The forward pass itself is JavaScript (book/explorer/vae_explorer.js). This module
exports a Keras encoder and decoder into what that script reads, layer by layer,
and wraps script, data and a container into one HTML output. Inline, because a
page opened from file:// cannot fetch() a local file, while a <script> in the
page always runs (in the built book and in Jupyter alike).
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SCRIPT = ROOT / "book" / "explorer" / "vae_explorer.js"
LATENCY_PATH = ROOT / "results" / "explorer" / "latency.json"
# The weights ship as float32, or as float16 (half the bytes) for a model whose
# outputs float16 rounding moves by at most TOLERANCE (`half_precision_error`).
WEIGHT_DTYPE = "float32"
TOLERANCE = 1e-4  # per pixel and per latent value, as the browser pass is tested


def b64(array, dtype) -> str:
    """An array as base64 of its little-endian bytes (what the script decodes)."""
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return base64.b64encode(data.tobytes()).decode("ascii")


def layer_spec(layer, dtype=WEIGHT_DTYPE) -> dict | None:
    """One Keras layer as the script's layer dict (None for the input layer).

    Only what the book's model uses: anything else raises, so a change to the
    architecture fails here and not silently in the browser.
    """
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "InputLayer":
        return None
    if kind in ("Conv2D", "Conv2DTranspose"):
        unsupported = {
            "padding": config["padding"] != "same",
            "data_format": config["data_format"] != "channels_last",
            "dilation_rate": tuple(config["dilation_rate"]) != (1, 1),
            "output_padding": config.get("output_padding") is not None,
            "groups": config.get("groups", 1) != 1,
        }
        bad = [name for name, is_bad in unsupported.items() if is_bad]
        if bad:
            raise ValueError(f"{layer.name}: the browser pass has no {', '.join(bad)}")
        kernel, bias = layer.get_weights()
        return {
            "type": "conv2d" if kind == "Conv2D" else "conv2d_transpose",
            "name": layer.name,
            "filters": config["filters"],
            "kernel_size": list(config["kernel_size"]),
            "strides": list(config["strides"]),
            "activation": config["activation"],
            "dtype": dtype,
            "kernel": b64(kernel, dtype),
            "bias": b64(bias, dtype),
        }
    if kind == "Dense":
        kernel, bias = layer.get_weights()
        return {
            "type": "dense",
            "name": layer.name,
            "units": config["units"],
            "activation": config["activation"],
            "dtype": dtype,
            "kernel": b64(kernel, dtype),
            "bias": b64(bias, dtype),
        }
    if kind == "Reshape":
        return {
            "type": "reshape",
            "name": layer.name,
            "target_shape": list(config["target_shape"]),
        }
    if kind == "Flatten":
        return {"type": "flatten", "name": layer.name}
    if kind == "Activation":
        return {
            "type": "activation",
            "name": layer.name,
            "activation": config["activation"],
        }
    raise ValueError(f"{layer.name}: the browser forward pass has no {kind} layer")


def chain(model, dtype=WEIGHT_DTYPE) -> list[dict]:
    """The model's layers in order; each must read the previous layer's output."""
    specs, previous = [], None
    for layer in model.layers:
        if previous is not None and layer.input is not previous.output:
            raise ValueError(
                f"{model.name}: {layer.name} does not follow {previous.name}"
            )
        spec = layer_spec(layer, dtype)
        if spec is not None:
            specs.append(spec)
        previous = layer
    return specs


def model_spec(
    encoder, decoder, encoder_dtype=WEIGHT_DTYPE, decoder_dtype=WEIGHT_DTYPE
) -> dict:
    """Encoder (a chain, then the two heads z_mean and z_log_var) and decoder."""
    heads = {name: encoder.get_layer(name) for name in ("z_mean", "z_log_var")}
    trunk = keras_model_without(encoder, heads.values())
    return {
        "encoder": {
            "input_shape": list(encoder.input_shape[1:]),
            "layers": chain(trunk, encoder_dtype),
            "heads": {
                name: layer_spec(layer, encoder_dtype) for name, layer in heads.items()
            },
        },
        "decoder": {
            "input_shape": list(decoder.input_shape[1:]),
            "layers": chain(decoder, decoder_dtype),
        },
    }


def half_precision_error(model, inputs) -> float:
    """Largest change of any output value when the weights are rounded to float16."""

    def outputs():
        out = model.predict(inputs, verbose=0)
        return out if isinstance(out, list | tuple) else [out]

    weights = model.get_weights()
    exact = outputs()
    try:
        model.set_weights([w.astype("float16").astype("float32") for w in weights])
        rounded = outputs()
    finally:
        model.set_weights(weights)
    return max(
        float(np.max(np.abs(a - b))) for a, b in zip(exact, rounded, strict=True)
    )


def shipping_dtype(error: float, tolerance: float = TOLERANCE) -> str:
    """float16 when rounding to it stays within the tolerance, else float32."""
    return "float16" if error <= tolerance else "float32"


def keras_model_without(encoder, heads):
    """The encoder up to the layer both heads read (a chain the script runs)."""
    import keras

    inputs = {id(head.input) for head in heads}
    if len(inputs) != 1:
        raise ValueError("z_mean and z_log_var must read the same layer")
    return keras.Model(encoder.input, next(iter(heads)).input, name="encoder_trunk")


def first_of_each_digit(y) -> np.ndarray:
    """Indices of the first image of each digit 0-9 present in y."""
    return np.array([np.flatnonzero(y == d)[0] for d in range(10) if (y == d).any()])


def explorer_data(
    encoder,
    decoder,
    x_test,
    y_test,
    encoder_dtype=WEIGHT_DTYPE,
    decoder_dtype=WEIGHT_DTYPE,
) -> dict:
    """Everything the page needs: weights, the test set's posterior means (the
    plane's scatter, in float16: a thousandth of a unit is far below a pixel)
    and one test image per digit to start from."""
    z_mean, _ = encoder.predict(x_test, batch_size=1000, verbose=0)
    examples = first_of_each_digit(y_test)
    pixels = np.round(np.asarray(x_test[examples]).reshape(len(examples), -1) * 255)
    return {
        "model": model_spec(encoder, decoder, encoder_dtype, decoder_dtype),
        "scatter": {
            "dtype": "float16",
            "z": b64(z_mean[:, :2], "float16"),
            "labels": b64(np.asarray(y_test), "uint8"),
        },
        "examples": {
            "images": b64(pixels, "uint8"),
            "labels": [int(d) for d in np.asarray(y_test)[examples]],
        },
    }


def weight_bytes(spec: dict) -> int:
    """Bytes of weights in a model_spec part (decoded, not base64)."""
    total = 0
    for layer in [*spec["layers"], *spec.get("heads", {}).values()]:
        for key in ("kernel", "bias"):
            if key in layer:
                total += len(base64.b64decode(layer[key]))
    return total


def explorer_html(data: dict, element_id: str | None = None) -> str:
    """The explorer as one HTML fragment: container, the script, the data, a mount.

    The <noscript> text is what a reader without JavaScript sees.
    """
    source = SCRIPT.read_text()
    if "</script" in source.lower():
        raise ValueError(f"{SCRIPT} contains '</script', which would end the tag")
    element_id = element_id or f"vae-explorer-{uuid.uuid4().hex[:8]}"
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")
    return (
        f'<div id="{element_id}" class="vae-explorer">'
        "<noscript>The latent-space explorer needs JavaScript.</noscript></div>\n"
        f"<script>\n{source}\n</script>\n"
        f"<script>window.VAE_EXPLORER_DATA = {payload};\n"
        "window.VAE_EXPLORER = VaeExplorer.mount(\n"
        f'  document.getElementById("{element_id}"), window.VAE_EXPLORER_DATA);\n'
        "</script>\n"
    )


def read_latency(path: Path = LATENCY_PATH) -> dict | None:
    """benchmarks/explorer_latency.py's results, or None if it has not run."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None

"""The chapters' own model code against the module: drift fails `make unit`.

Chapters 2-5 type the encoder, the sampling layer, the decoder and the loss
layer in the open, in code cells tagged `vae-definition`; the rest of the book
and `vae.py` use `vae_helpers`. These tests run only the tagged cells (no data,
no training) and compare what each defines with the module's part of the same
name: models layer by layer and output by output, layers by their behaviour.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import vae_helpers as vh

ROOT = Path(__file__).resolve().parents[1]
TAG = "vae-definition"
PARTS = {
    "encoder",
    "decoder",
    "Sampling",
    "CustomVariationalLayer",
    "VariationalAutoencoder",
}


def definition_cells(folder=ROOT / "chapters"):
    """(notebook name, cell index, source) of every tagged code cell."""
    found = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "code" and TAG in tags:
                found.append((path.name, index, "".join(cell["source"])))
    return found


def run_cell(source):
    """Runs one cell with the chapters' imports; returns the models and layer
    classes it defines (the Keras tensors it leaves behind are not parts)."""
    names = {
        "keras": keras,
        "layers": layers,
        "ops": ops,
        "np": np,
        "tf": tf,
        "vh": vh,
        "latent_dim": vh.DEFAULTS.latent_dim,
    }
    given = set(names)
    exec(compile(source, "<definition cell>", "exec"), names)
    parts = {}
    for name, value in names.items():
        if name in given or name.startswith("__"):
            continue
        if isinstance(value, keras.Model):
            parts[value.name] = value
        elif isinstance(value, type) and issubclass(value, layers.Layer):
            parts[value.__name__] = value
    return parts


def compare_model(model):
    """Same network as `vh.build_<name>`: layers, names, weights, outputs."""
    builder = getattr(vh, f"build_{model.name}", None)
    assert builder is not None, f"vae_helpers has no build_{model.name}"
    reference = builder(vh.DEFAULTS.latent_dim)
    batch = np.random.default_rng(0).random((16, *model.input_shape[1:]))
    vh.assert_same_network(model, reference, batch.astype("float32"))


def compare_sampling(ours, theirs):
    """Same draws for the same seed and inputs, call after call, at any batch
    size, in float32 and under bfloat16 (same output dtype too)."""
    rng = np.random.default_rng(1)
    for precision in ("float32", "bfloat16"):
        with vh.dtype_policy(precision):
            our_layer, their_layer = ours(seed=11), theirs(seed=11)
            for batch in (1, 5, 32, 5):
                z_mean = rng.normal(size=(batch, 2)).astype("float32")
                z_log_var = rng.normal(size=(batch, 2)).astype("float32")
                a = our_layer([z_mean, z_log_var])
                b = their_layer([z_mean, z_log_var])
                assert a.dtype == b.dtype, (precision, a.dtype, b.dtype)
                np.testing.assert_array_equal(
                    ops.convert_to_numpy(ops.cast(a, "float32")),
                    ops.convert_to_numpy(ops.cast(b, "float32")),
                )


def compare_loss_layer(ours, theirs):
    """Same loss and the same per-image terms on random inputs, for two KL
    weights, in float32 and under bfloat16."""
    rng = np.random.default_rng(2)
    x = rng.random((8, *vh.IMAGE_SHAPE)).astype("float32")
    x_logits = (3 * rng.normal(size=x.shape)).astype("float32")
    z_mean = rng.normal(size=(8, 2)).astype("float32")
    z_log_var = rng.normal(size=(8, 2)).astype("float32")
    inputs = [x, x_logits, z_mean, z_log_var]
    for precision in ("float32", "bfloat16"):
        for kl_weight in (1.0, 0.25):
            with vh.dtype_policy(precision):
                our_layer, their_layer = ours(kl_weight), theirs(kl_weight)
            results = []
            for layer in (our_layer, their_layer):
                terms = layer(inputs)
                losses = [float(loss) for loss in layer.losses]
                terms = {k: ops.convert_to_numpy(v) for k, v in terms.items()}
                results.append((terms, losses))
            (our_terms, our_losses), (terms, losses) = results
            assert len(our_losses) == len(losses) == 1, (our_losses, losses)
            np.testing.assert_allclose(our_losses, losses, rtol=1e-5)
            assert our_terms.keys() == terms.keys(), (our_terms, terms)
            for name, value in terms.items():
                np.testing.assert_allclose(our_terms[name], value, rtol=1e-5)


def compare_model_class(ours, theirs):
    """The same logs from one fit() step of the module's graph wrapped in each
    class (a learning rate of 1e-12: the logs are the starting terms)."""
    x = np.random.default_rng(3).random((32, *vh.IMAGE_SHAPE)).astype("float32")
    logs = []
    for model_class in (ours, theirs):
        keras.utils.set_random_seed(0)  # the same weights and noise for both
        vae, _, _ = vh.build_vae(seed=0)
        model = model_class(vae.input, vae.output)
        vh.compile_vae(model, 1e-12)
        fit = model.fit(x, epochs=1, batch_size=32, shuffle=False, verbose=0)
        logs.append({k: v[0] for k, v in fit.history.items()})
    assert logs[0].keys() == logs[1].keys() >= {"loss", "reconstruction", "kl"}
    for name, value in logs[1].items():
        np.testing.assert_allclose(logs[0][name], value, rtol=1e-5, err_msg=name)


LAYER_CHECKS = {
    "Sampling": compare_sampling,
    "CustomVariationalLayer": compare_loss_layer,
    "VariationalAutoencoder": compare_model_class,
}


def compare(parts):
    """Compares every part a cell defines; returns their names."""
    assert parts, "the tagged cell defines no model and no layer class"
    for name, part in parts.items():
        assert isinstance(part, keras.Model) or name in LAYER_CHECKS, (
            f"no comparison for a layer named {name}"
        )
        try:
            if isinstance(part, keras.Model):
                compare_model(part)
            else:
                LAYER_CHECKS[name](part, getattr(vh, name))
        except AssertionError:
            raise
        except Exception as error:  # a drifted part can crash where the module runs
            message = f"{name} fails where the module's runs: {error}"
            raise AssertionError(message) from error
    return set(parts)


CELLS = definition_cells()


@pytest.mark.parametrize(
    "source", [c[2] for c in CELLS], ids=[f"{c[0]}:cell{c[1]}" for c in CELLS]
)
def test_definition_cell_matches_the_module(source):
    keras.utils.set_random_seed(0)
    compare(run_cell(source))


def test_every_model_part_has_a_definition_cell():
    defined = set()
    for _, _, source in CELLS:
        defined |= set(run_cell(source))
    assert PARTS <= defined, f"no tagged cell defines {sorted(PARTS - defined)}"


def tagged_source(notebook):
    sources = [source for name, _, source in CELLS if name == notebook]
    assert len(sources) == 1, f"expected one tagged cell in {notebook}"
    return sources[0]


@pytest.mark.parametrize(
    ("notebook", "old", "new"),
    [
        ("02_encoder.ipynb", "layers.Dense(32,", "layers.Dense(16,"),
        ("02_encoder.ipynb", 'name="z_log_var"', 'name="z_log_variance"'),
        ("03_sampling.ipynb", "ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)"),
        ("03_sampling.ipynb", "dtype=z_mean.dtype, ", ""),
        ("04_decoder.ipynb", 'name="logits"', 'name="logit"'),
        ("04_decoder.ipynb", '"sigmoid", name=', '"relu", name='),
    ],
)
def test_a_drifted_definition_fails(notebook, old, new):
    """Each comparison can fail: a changed copy of a chapter's cell does."""
    source = tagged_source(notebook)
    assert old in source, f"{notebook}'s tagged cell no longer contains {old!r}"
    with pytest.raises(AssertionError):
        compare(run_cell(source.replace(old, new)))


def test_a_different_loss_fails():
    """The loss-layer comparison can fail: β halved inside the layer."""

    class CustomVariationalLayer(vh.CustomVariationalLayer):
        def __init__(self, kl_weight=1.0, **kwargs):
            super().__init__(kl_weight / 2, **kwargs)

    with pytest.raises(AssertionError):
        compare({"CustomVariationalLayer": CustomVariationalLayer})


def test_a_model_that_logs_other_terms_fails():
    """The model-class comparison can fail: the KL tracker fed the reconstruction."""

    class VariationalAutoencoder(vh.VariationalAutoencoder):
        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            y_pred = {**y_pred, "kl": y_pred["reconstruction"]}
            return super().compute_metrics(x, y, y_pred, sample_weight)

    with pytest.raises(AssertionError):
        compare({"VariationalAutoencoder": VariationalAutoencoder})

"""The convolutional VAE of this book, in one module.

The chapters build each piece in the open and then check it against this file;
`vae.py` and the later chapters import it. Sections, in the book's order:
data, model parts (encoder, sampling, decoder, loss layer), training,
evaluation, the grid, plots, and small file utilities.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from vae_config import RunConfig

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _native_stderr_hidden():
    """Hides what C++ writes to stderr while TensorFlow starts.

    Its start-up lines (oneDNN, CUDA probes on a CPU machine) bypass both
    Python logging and TF_CPP_MIN_LOG_LEVEL; they are noise in every CLI
    message and notebook output. If the import fails, they are shown.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _native_stderr_hidden():
    import keras
    import tensorflow as tf
    from keras import layers, ops

    tf.config.list_physical_devices()  # the CUDA probe logs here, not mid-training
    tf.zeros(())  # and so does the CPU-feature notice

IMAGE_SHAPE = (28, 28, 1)
PIXELS = 28 * 28
MNIST_PATH_ENV = "VAE_MNIST_PATH"
FAST_ENV = "VAE_FAST"
FAST_TRAIN_IMAGES = 2048
FAST_TEST_IMAGES = 512
FAST_IW_IMAGES = 32

# The defaults of `python vae.py`: measured, not guessed (see the README).
DEFAULTS = RunConfig()


def seed_kl_weight(latent_dim: int = 2) -> float:
    """The β hidden in the seed's loss, per-pixel mean BCE + 5e-4·KL-mean term.

    Seed: mean_pixels(BCE) - 5e-4·mean_d(1 + log_var - mean² - exp(log_var))
        = (sum_pixels(BCE) + 784·1e-3/d · KL) / 784,
    so β = 0.784 / d: 0.392 for the 2-D latent.
    """
    return PIXELS * 1e-3 / latent_dim


class DataError(ValueError):
    """A data file that is missing, unreadable or not MNIST in Keras' layout."""


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

_EXPECTED = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}


def fast_mode() -> bool:
    """True when `VAE_FAST=1`: tiny data and one epoch, for smoke tests."""
    return os.environ.get(FAST_ENV, "").strip() not in ("", "0", "false", "False")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"MNIST file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(_EXPECTED) - set(npz.files))
            if missing:
                raise DataError(
                    f"{path} is not MNIST in Keras' layout: missing keys {missing}"
                )
            return {key: npz[key] for key in _EXPECTED}
    except DataError:
        raise
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise DataError(
                f"{path} holds object arrays that need pickle; refusing to load them"
            ) from error
        raise DataError(f"{path} is not a readable .npz file: {error}") from error
    except Exception as error:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise DataError(f"{path} is not a readable .npz file: {error}") from error


def _validate(arrays: dict[str, np.ndarray], source: str) -> None:
    for key, shape in _EXPECTED.items():
        array = arrays[key]
        if array.shape != shape:
            raise DataError(
                f"{source}: {key} has shape {array.shape}, expected {shape}"
            )
        if array.dtype != np.uint8:
            raise DataError(f"{source}: {key} has dtype {array.dtype}, expected uint8")
    for key in ("y_train", "y_test"):
        if arrays[key].max() > 9:
            raise DataError(f"{source}: {key} has labels above 9")


def load_mnist(path: str | os.PathLike | None = None):
    """MNIST as float32 images in [0, 1], shaped (N, 28, 28, 1), with labels.

    Source, in order: `path`, the `VAE_MNIST_PATH` environment variable, else
    Keras' own download. Returns ((x_train, y_train), (x_test, y_test)).
    """
    path = path or os.environ.get(MNIST_PATH_ENV) or None
    if path is not None:
        source = str(path)
        arrays = _read_npz(Path(path))
    else:
        source = "keras.datasets.mnist"
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as error:
            raise DataError(
                "could not download MNIST "
                f"({type(error).__name__}); offline, pass a local file with "
                f"--data PATH or set {MNIST_PATH_ENV}=/path/to/mnist.npz"
            ) from error
        arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    _validate(arrays, source)

    def images(key):
        return (arrays[key].astype("float32") / 255.0)[..., None]

    return (
        (images("x_train"), arrays["y_train"].astype("int64")),
        (images("x_test"), arrays["y_test"].astype("int64")),
    )


def fast_subset(x_train, y_train, x_test, y_test):
    """In fast mode, the first 2,048 training and 512 test images; else all."""
    if not fast_mode():
        return x_train, y_train, x_test, y_test
    return (
        x_train[:FAST_TRAIN_IMAGES],
        y_train[:FAST_TRAIN_IMAGES],
        x_test[:FAST_TEST_IMAGES],
        y_test[:FAST_TEST_IMAGES],
    )


# ----------------------------------------------------------------------------
# Model parts
# ----------------------------------------------------------------------------


def build_encoder(latent_dim: int = 2) -> keras.Model:
    """x (28, 28, 1) -> (z_mean, z_log_var): the parameters of q(z | x)."""
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", strides=2)(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name="encoder")


@keras.saving.register_keras_serializable(package="vae")
class Sampling(layers.Layer):
    """z = mean + exp(0.5 · log_var) · ε, ε ~ N(0, I): the reparameterization trick.

    The randomness sits in ε, outside the path from the encoder's outputs to z,
    so gradients flow through `z_mean` and `z_log_var`. ε takes its shape from
    `z_mean`, so any batch size works, and a seeded generator makes runs repeat.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(
            ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator
        )  # in the compute dtype: bfloat16 under mixed precision
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


# Which 2x2 tap of the 3x3 kernel each output phase reads, per axis ([tap][phase]):
# phase 0 (even outputs) reads tap 2 at offset -1 and tap 0; phase 1 (odd outputs)
# reads tap 1 only (index 3 is a zero tap). See `Conv2DTranspose`.
PHASE_TAPS = np.array([[2, 3], [0, 1]])


@keras.saving.register_keras_serializable(package="vae")
class Conv2DTranspose(layers.Conv2DTranspose):
    """Keras' Conv2DTranspose, computed as an ordinary convolution on JAX.

    XLA on CPU computes the transposed convolution's kernel gradient about 20x
    slower than TensorFlow (results/bench/jax-cpu.md). For the decoder's case
    (kernel 3, stride 2, "same") the same output is a 2x2 convolution into the
    four phases of each 2x2 output block, then a pixel shuffle: same weights,
    same outputs to float rounding. The name stays Keras' so that weight files
    load on every backend; other backends and other settings use Keras' op.
    """

    def call(self, inputs):
        if keras.backend.backend() == "jax" and self.is_phase_case():
            return self.call_as_phases(inputs)
        return super().call(inputs)

    def call_as_phases(self, inputs):
        kernel = ops.transpose(self.kernel, (0, 1, 3, 2))  # (3, 3, in, out)
        kernel = ops.pad(kernel, [(0, 1), (0, 1), (0, 0), (0, 0)])  # tap 3 = 0
        kernel = ops.take(ops.take(kernel, PHASE_TAPS, axis=0), PHASE_TAPS, axis=2)
        kernel = ops.transpose(kernel, (0, 2, 4, 1, 3, 5))  # (2, 2, in, 2, 2, out)
        height, width, filters = inputs.shape[1], inputs.shape[2], self.filters
        kernel = ops.reshape(kernel, (2, 2, inputs.shape[3], 4 * filters))
        padded = ops.pad(inputs, [(0, 0), (1, 0), (1, 0), (0, 0)])
        phases = ops.conv(padded, kernel, strides=1, padding="valid")
        phases = ops.reshape(phases, (-1, height, width, 2, 2, filters))
        outputs = ops.transpose(phases, (0, 1, 3, 2, 4, 5))  # rows, then columns
        outputs = ops.reshape(outputs, (-1, 2 * height, 2 * width, filters))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def is_phase_case(self) -> bool:
        return (
            tuple(self.kernel_size) == (3, 3)
            and tuple(self.strides) == (2, 2)
            and self.padding == "same"
            and tuple(self.dilation_rate) == (1, 1)
            and self.output_padding is None
            and self.data_format == "channels_last"
        )


def build_decoder(latent_dim: int = 2) -> keras.Model:
    """z -> Bernoulli means p(x | z) for every pixel, shaped (28, 28, 1).

    The sigmoid is a layer of its own after the layer named "logits", so the
    loss can read the logits (`decoder_logits`) and never take log(sigmoid).
    """
    inputs = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(14 * 14 * 64, activation="relu")(inputs)
    x = layers.Reshape((14, 14, 64))(x)
    x = Conv2DTranspose(32, 3, padding="same", activation="relu", strides=2)(x)
    logits = layers.Conv2D(1, 3, padding="same", name="logits")(x)
    outputs = layers.Activation("sigmoid", name="pixel_means")(logits)
    return keras.Model(inputs, outputs, name="decoder")


def decoder_logits(decoder: keras.Model) -> keras.Model:
    """The decoder without its final sigmoid: same weights, logits out."""
    return keras.Model(
        decoder.input, decoder.get_layer("logits").output, name="decoder_logits"
    )


class OneChannelConvAsDepthwise(layers.Layer):
    """`conv` (the decoder's "logits": 3x3, "same", one output channel) as a
    depthwise convolution and a sum over channels: same weights, same outputs
    to float rounding.

    TensorFlow's CPU kernel for a convolution to one channel runs at a few
    GFLOP/s, and the IW bound decodes 10^6 times: this form makes the layer
    about 2x faster there (iw_share.py; README). Training is not affected
    (batch 32 is small), so the model itself keeps Keras' Conv2D.
    """

    def __init__(self, conv, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv

    def call(self, features):
        per_channel = ops.depthwise_conv(features, self.conv.kernel, 1, "same")
        return ops.sum(per_channel, axis=-1, keepdims=True) + self.conv.bias


def is_one_channel_conv(layer) -> bool:
    """A stride-1 "same" Conv2D to one channel: the case the depthwise form covers
    (the benchmark's other decoders end in a transposed convolution instead)."""
    return (
        type(layer) is layers.Conv2D
        and layer.filters == 1
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.padding == "same"
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


def decoder_logits_for_inference(decoder: keras.Model) -> keras.Model:
    """`decoder_logits`, with the last layer as `OneChannelConvAsDepthwise` on
    TensorFlow (XLA's depthwise convolution on CPU is slower, so JAX and
    PyTorch keep the layer as it is)."""
    logits = decoder.get_layer("logits")
    if keras.backend.backend() != "tensorflow" or not is_one_channel_conv(logits):
        return decoder_logits(decoder)
    outputs = OneChannelConvAsDepthwise(logits)(logits.input)
    return keras.Model(decoder.input, outputs, name="decoder_logits")


def reconstruction_loss(x, x_decoded, from_logits=False):
    """Binary cross-entropy summed over the 784 pixels: -log p(x | z) per image.

    The model passes logits (`from_logits=True`): the loss is then exact for
    any logit. From probabilities, Keras clips them to [1e-7, 1 - 1e-7], so a
    confidently wrong pixel costs at most 16.1 nats and gets no gradient.
    """
    bce = ops.binary_crossentropy(
        ops.reshape(x, (-1, PIXELS)),
        ops.reshape(x_decoded, (-1, PIXELS)),
        from_logits=from_logits,
    )
    return ops.sum(bce, axis=-1)


def kl_divergence(z_mean, z_log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) in closed form, summed over dimensions."""
    # NumPy in works on every backend (torch tensors and arrays do not mix)
    z_mean, z_log_var = ops.convert_to_tensor(z_mean), ops.convert_to_tensor(z_log_var)
    return -0.5 * ops.sum(
        1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1
    )


@keras.saving.register_keras_serializable(package="vae")
class CustomVariationalLayer(layers.Layer):
    """Adds the VAE loss to the model with `self.add_loss`; returns its two terms.

    The loss is the negative ELBO per image, averaged over the batch:
    sum of BCE over pixels (from the decoder's logits) + β · KL summed over
    latent dimensions. It computes in float32 even under mixed precision:
    bfloat16 keeps about 3 significant digits, too few for a sum of 784 pixel
    terms near 140 nats. Keras 3 dropped `add_loss(loss, inputs=...)`; calling
    `self.add_loss(scalar)` inside `call()` works on every backend, with
    `model.compile(loss=None)`. β lives in a variable so a warm-up callback can
    ramp it without recompiling. The per-image terms are the layer's output, so
    the model can log them (`VariationalAutoencoder.compute_metrics`).
    """

    def __init__(self, kl_weight: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.target_kl_weight = float(kl_weight)
        self.kl_weight = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(kl_weight),
            trainable=False,
            name="kl_weight",
        )

    def call(self, inputs):
        x, x_logits, z_mean, z_log_var = (ops.cast(t, "float32") for t in inputs)
        reconstruction = reconstruction_loss(x, x_logits, from_logits=True)
        kl = kl_divergence(z_mean, z_log_var)
        self.add_loss(ops.mean(reconstruction + self.kl_weight * kl))
        return {"reconstruction": reconstruction, "kl": kl}

    def get_config(self):
        return {**super().get_config(), "kl_weight": self.target_kl_weight}


@keras.saving.register_keras_serializable(package="vae")
class VariationalAutoencoder(keras.Model):
    """The functional VAE, logging its loss terms as `reconstruction` and `kl`.

    The trackers live in the model, not in the loss layer: a metric updated
    inside a layer's `call()` breaks JAX's stateless training step
    (keras-team/keras#19402), while `compute_metrics` works on all backends.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.reconstruction_tracker.update_state(y_pred["reconstruction"])
        self.kl_tracker.update_state(y_pred["kl"])
        return super().compute_metrics(x, y, y_pred, sample_weight)


def build_vae(
    latent_dim: int = DEFAULTS.latent_dim,
    kl_weight: float = DEFAULTS.kl_weight,
    seed: int | None = DEFAULTS.seed,
):
    """The whole model: encoder -> sampling -> decoder -> loss layer.

    Returns (vae, encoder, decoder); the three share their weights. The vae
    maps images to their per-image loss terms, {"reconstruction", "kl"}.
    """
    encoder = build_encoder(latent_dim)
    decoder = build_decoder(latent_dim)
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    z_mean, z_log_var = encoder(inputs)
    z = Sampling(seed=seed, name="sampling")([z_mean, z_log_var])
    x_logits = decoder_logits(decoder)(z)
    terms = CustomVariationalLayer(kl_weight, name="vae_loss")(
        [inputs, x_logits, z_mean, z_log_var]
    )
    return VariationalAutoencoder(inputs, terms, name="vae"), encoder, decoder


def loss_layer(vae: keras.Model) -> CustomVariationalLayer:
    return vae.get_layer("vae_loss")


def assert_same_network(model, reference, inputs, tolerance=1e-6) -> int:
    """Fails unless `model` (a chapter's) is `reference` (this module's).

    Layer by layer: same classes (or this module's subclass, as for
    `Conv2DTranspose`), configurations and output shapes; the names
    this module chooses (z_mean, logits) must match, automatic ones (conv2d_3,
    numbered by what was built before) are ignored. Then `model`'s weights
    are copied into `reference` and both must give the same outputs on
    `inputs`. Returns the number of layers compared.
    """
    import re

    def automatic(layer):
        snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)
        snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", snake).lower()
        return re.fullmatch(rf"{snake}(_\d+)?", layer.name) is not None

    assert model.name == reference.name, (model.name, reference.name)
    assert len(model.layers) == len(reference.layers), "different number of layers"
    for ours, theirs in zip(model.layers, reference.layers, strict=True):
        assert isinstance(theirs, type(ours)), (ours.name, theirs.name)
        assert type(ours).__name__ == type(theirs).__name__, (ours.name, theirs.name)
        ours_config, their_config = ours.get_config(), theirs.get_config()
        if automatic(theirs):
            ours_config.pop("name"), their_config.pop("name")
        differ = {
            key: (ours_config.get(key), their_config.get(key))
            for key in ours_config.keys() | their_config.keys()
            if ours_config.get(key) != their_config.get(key)
        }
        assert not differ, f"{ours.name} (ours, module's): {differ}"
        assert ours.output.shape == theirs.output.shape, ours.name
    assert model.count_params() == reference.count_params()
    reference.set_weights(model.get_weights())
    outputs = zip(
        keras.tree.flatten(model(inputs)),
        keras.tree.flatten(reference(inputs)),
        strict=True,
    )
    for ours, theirs in outputs:
        ours, theirs = ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs)
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)
    return len(model.layers)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


class KLWarmup(keras.callbacks.Callback):
    """Ramps β linearly from 0 to its target over the first `steps` batches.

    The classic guard against posterior collapse (Bowman et al., 2016): the
    decoder learns to use z before the KL term bites, and while β is small the
    digit classes spread apart. With `period`, the ramp starts again every
    `period` batches: cyclical annealing (Fu et al., 2019), which lets the
    codes spread out again after the layout has formed. The README has the
    measurements behind the default ramp.
    """

    def __init__(self, layer: CustomVariationalLayer, steps: int, period=None):
        super().__init__()
        self.layer, self.steps, self.step = layer, max(int(steps), 0), 0
        self.period = int(period) if period else None

    def on_train_batch_begin(self, batch, logs=None):
        into_cycle = self.step % self.period if self.period else self.step
        if into_cycle <= self.steps:  # after the ramp, β stays put: no work
            # JAX's fit() keeps the variables' values outside the model while
            # it trains: fetch them first, or the assignment is lost (keras#19054)
            getattr(self.model, "jax_state_sync", lambda: None)()
            fraction = 1.0 if self.steps == 0 else into_cycle / self.steps
            self.layer.kl_weight.assign(fraction * self.layer.target_kl_weight)
        self.step += 1

    def on_train_end(self, logs=None):
        self.layer.kl_weight.assign(self.layer.target_kl_weight)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch, kept in the history as `seconds`."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self.start


def compile_vae(
    vae,
    learning_rate=DEFAULTS.learning_rate,
    decay_steps=None,
    warmup_steps=0,
    jit_compile=DEFAULTS.xla,
):
    """Adam, no Keras loss (the loss layer adds it), XLA as in DEFAULTS.

    `jit_compile` is TensorFlow's choice: JAX always compiles its step (without
    it, JAX runs op by op, many times slower) and PyTorch runs eagerly.
    With `decay_steps` (the run's total), the learning rate rises linearly
    from 0 over `warmup_steps`, then follows a cosine down to 0 at the last
    step. The warm-up keeps Adam's first, poorly scaled steps from throwing
    z_log_var far out while its moment estimates settle.
    """
    if decay_steps:
        warmup_steps = int(min(warmup_steps, decay_steps - 1))
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate,
            decay_steps=int(decay_steps) - warmup_steps,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    vae.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=None,
        jit_compile={"tensorflow": bool(jit_compile), "jax": True}.get(
            keras.backend.backend(), False
        ),
    )
    return vae


def compile_for_run(
    vae,
    train_images,
    epochs=DEFAULTS.epochs,
    batch_size=DEFAULTS.batch_size,
    learning_rate=DEFAULTS.learning_rate,
    lr_warmup_epochs=DEFAULTS.lr_warmup_epochs,
    jit_compile=DEFAULTS.xla,
):
    """`compile_vae` with the default schedule laid over a whole run's steps."""
    steps_per_epoch = math.ceil(train_images / batch_size)
    return compile_vae(
        vae,
        learning_rate,
        decay_steps=epochs * steps_per_epoch,
        warmup_steps=round(lr_warmup_epochs * steps_per_epoch),
        jit_compile=jit_compile,
    )


def image_batches(x, batch_size, shuffle_seed=None):
    """A `tf.data` pipeline of image batches, reshuffled each epoch if seeded.

    Why not `fit(x_numpy, shuffle=True)`: the iterator Keras builds from arrays
    runs tf.data's autotuner, which stalled at every epoch boundary on the CPUs
    measured (README). Shuffling indices and gathering the batch keeps one copy
    of the images in memory.
    """
    images = tf.convert_to_tensor(x, dtype=tf.float32)
    indices = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        indices = indices.shuffle(
            len(x), seed=shuffle_seed, reshuffle_each_iteration=True
        )
    batches = indices.batch(batch_size).map(lambda i: tf.gather(images, i))
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return batches.prefetch(2).with_options(options)


def train_vae(
    vae,
    x_train,
    x_val=None,
    epochs=DEFAULTS.epochs,
    batch_size=DEFAULTS.batch_size,
    kl_warmup_epochs=DEFAULTS.kl_warmup_epochs,
    kl_cycles=DEFAULTS.kl_cycles,
    verbose="auto",
    callbacks=(),
    seed=DEFAULTS.seed,
):
    """`fit()` on the images alone, as the seed's `fit(x, None)`; returns the
    history dict (per epoch).

    The loss layer needs only the images, so the batches carry no targets. The
    training images are reshuffled every epoch in an order fixed by `seed`;
    validation images, if given, are scored after each epoch. With
    `kl_cycles` > 1 the β ramp repeats at the start of each of that many equal
    parts of the run.
    """
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    warmup_steps = round(kl_warmup_epochs * steps_per_epoch)
    if warmup_steps:  # without a ramp, no per-step callback work at all
        period = epochs * steps_per_epoch / kl_cycles if kl_cycles > 1 else None
        ramp = KLWarmup(loss_layer(vae), warmup_steps, period)
        callbacks = [ramp, *callbacks]
    history = vae.fit(
        image_batches(x_train, batch_size, shuffle_seed=seed),
        epochs=epochs,
        shuffle=False,  # the pipeline reshuffles each epoch itself
        validation_data=None if x_val is None else image_batches(x_val, batch_size),
        callbacks=[EpochTimer(), keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=verbose,
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


# ----------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------


def evaluate_elbo(encoder, decoder, x, batch_size=500, seed=0, round_code_to=None):
    """Test negative ELBO in nats per image (β = 1), with its two parts.

    One z sample per image (seeded); KL in closed form; the reconstruction
    from the decoder's logits, as in training. Lower is better. The parts'
    outputs are read in float32, so parts built under `mixed_bfloat16` are
    still summed in float32; `round_code_to` (e.g. "bfloat16") rounds z before
    decoding, to measure what that rounding costs (benchmarks/bf16_forward.py).
    """
    rng = np.random.default_rng(seed)
    logits_of = decoder_logits(decoder)
    reconstruction, kl = [], []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        z_mean, z_log_var = (
            np.asarray(t, dtype="float32") for t in encoder.predict_on_batch(batch)
        )  # NumPy, any backend
        epsilon = rng.standard_normal(z_mean.shape).astype("float32")
        z = z_mean + np.exp(0.5 * z_log_var) * epsilon
        if round_code_to is not None:
            z = ops.convert_to_numpy(ops.cast(ops.cast(z, round_code_to), "float32"))
        logits = np.asarray(logits_of.predict_on_batch(z), dtype="float32")
        reconstruction.append(
            ops.convert_to_numpy(reconstruction_loss(batch, logits, from_logits=True))
        )
        kl.append(ops.convert_to_numpy(kl_divergence(z_mean, z_log_var)))
    reconstruction, kl = np.concatenate(reconstruction), np.concatenate(kl)
    return {
        "neg_elbo": float(np.mean(reconstruction + kl)),
        "reconstruction": float(np.mean(reconstruction)),
        "kl": float(np.mean(kl)),
    }


def kl_per_dimension(encoder, x, batch_size=1000):
    """Mean KL of each latent dimension: near 0 means that dimension collapsed."""
    z_mean, z_log_var = encode(encoder, x, batch_size)
    kl = -0.5 * (1.0 + z_log_var - z_mean**2 - np.exp(z_log_var))
    return kl.mean(axis=0)


def _log_normal(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis."""
    return -0.5 * ops.sum(
        math.log(2 * math.pi) + log_var + ops.square(z - mean) / ops.exp(log_var),
        axis=-1,
    )


class DecodeInChunks(layers.Layer):
    """Logits for many codes, `chunk` codes at a time inside one compiled call.

    The bound decodes 20,000 codes per call. At 25 a time, each chunk's
    28x28x32 features (2.5 MB) stay in the CPU's cache instead of 2 GB going
    to memory and back: the bound is about a fifth faster (iw_share.py).
    """

    def __init__(self, logits_of, chunk, **kwargs):
        super().__init__(**kwargs)
        self.logits_of, self.chunk = logits_of, chunk

    def call(self, z):
        chunks = ops.reshape(z, (-1, self.chunk, z.shape[-1]))
        return ops.reshape(ops.map(self.logits_of, chunks), (-1, PIXELS))

    def compute_output_shape(self, z_shape):
        return (z_shape[0], PIXELS)


def decode_chunk(k: int, most: int = 25) -> int:
    """The largest divisor of k up to `most`: an image's k codes split evenly."""
    return max(d for d in range(1, min(k, most) + 1) if k % d == 0)


def _log_weights_model(encoder, decoder, k):
    """(x, ε) -> log p(x|z_i) + log p(z_i) - log q(z_i|x) for z_i = μ + σ·ε_i.

    A Keras model, so `predict_on_batch` runs it as one compiled function on
    any backend; everything in float32 (the decoder's logits, then softplus).
    """
    latent_dim = encoder.output[0].shape[-1]
    images = keras.Input(IMAGE_SHAPE, name="image")
    epsilon = keras.Input((k, latent_dim), name="epsilon")
    z_mean, z_log_var = (ops.cast(t, "float32") for t in encoder(images))
    mean, log_var = z_mean[:, None], z_log_var[:, None]
    z = mean + ops.exp(0.5 * log_var) * epsilon
    logits_of = decoder_logits_for_inference(decoder)
    logits = DecodeInChunks(logits_of, decode_chunk(k))(
        ops.reshape(z, (-1, latent_dim))
    )
    logits = ops.reshape(ops.cast(logits, "float32"), (-1, k, PIXELS))
    pixels = ops.reshape(images, (-1, 1, PIXELS))
    log_bernoulli = ops.sum(pixels * logits - ops.softplus(logits), axis=-1)
    log_weights = (
        log_bernoulli
        + _log_normal(z, 0.0, ops.zeros_like(z))
        - _log_normal(z, mean, log_var)
    )
    return keras.Model([images, epsilon], log_weights, name="iw_log_weights")


def importance_weighted_log_likelihood(
    encoder, decoder, x, k=1000, seed=0, max_decodes=20_000
):
    """log p(x) per image, estimated with k importance samples from q(z | x).

    log p(x) ≈ log (1/k) Σ_i p(x | z_i) p(z_i) / q(z_i | x)  (Burda et al., 2016):
    a lower bound that tightens as k grows (k = 1 is the ELBO). Image n's
    noise comes from its own stream (seed, n), so the result does not depend
    on how the images are batched. Returns nats per image (higher is better).
    """
    from scipy.special import logsumexp

    latent_dim = encoder.output[0].shape[-1]
    model = _log_weights_model(encoder, decoder, k)
    log_likelihood = np.empty(len(x))
    images_per_chunk = max(1, max_decodes // k)
    for start in range(0, len(x), images_per_chunk):
        rows = np.arange(start, min(start + images_per_chunk, len(x)))
        epsilon = np.stack(
            [
                np.random.default_rng([seed, n]).standard_normal((k, latent_dim))
                for n in rows
            ]
        ).astype("float32")
        log_weights = np.asarray(model.predict_on_batch([x[rows], epsilon]))
        log_likelihood[rows] = logsumexp(log_weights.astype("float64"), axis=1)
    return log_likelihood - math.log(k)


def summarize(values):
    """Mean and its standard error, for a per-image estimate."""
    values = np.asarray(values, "float64")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def encode(encoder, x, batch_size=1000):
    """(z_mean, z_log_var) as NumPy arrays for all of x."""
    z_mean, z_log_var = encoder.predict(x, batch_size=batch_size, verbose=0)
    return z_mean, z_log_var


# ----------------------------------------------------------------------------
# Gradients on any backend (the chapters' checks of the maths)
# ----------------------------------------------------------------------------


def value_and_gradients(f, *arguments):
    """f(*arguments) and its gradients with respect to each argument, as NumPy.

    `f` is written in `keras.ops`; each backend differentiates it its own way
    (TensorFlow's GradientTape, jax.grad, torch.autograd), which Keras does not
    wrap outside of training, hence these few lines. `f` must return a scalar.
    """
    arguments = [np.asarray(a, dtype="float32") for a in arguments]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        variables = [tf.Variable(a) for a in arguments]
        with tf.GradientTape() as tape:
            value = f(*variables)
        grads = tape.gradient(value, variables, unconnected_gradients="zero")
    elif backend == "jax":
        import jax

        value, grads = jax.value_and_grad(f, argnums=range(len(arguments)))(*arguments)
    elif backend == "torch":
        import torch

        leaves = [torch.tensor(a, requires_grad=True) for a in arguments]
        value = f(*leaves)
        grads = (
            torch.autograd.grad(value, leaves, allow_unused=True)
            if value.requires_grad  # else f does not depend on any argument
            else [None] * len(leaves)
        )
        grads = [
            torch.zeros_like(t) if g is None else g
            for t, g in zip(leaves, grads, strict=True)
        ]
    else:
        raise ValueError(f"no gradients for the {backend} backend")
    return float(ops.convert_to_numpy(value)), [ops.convert_to_numpy(g) for g in grads]


# ----------------------------------------------------------------------------
# The grid of generated digits
# ----------------------------------------------------------------------------


def grid_coordinates(n: int = 15, low: float = 0.05, high: float = 0.95):
    """Latent values at evenly spaced quantiles of N(0, 1), as in the seed."""
    from scipy.stats import norm

    return norm.ppf(np.linspace(low, high, n))


def grid_latents(n: int = 15, latent_dim: int = 2):
    """The n·n latent points, row by row: cell (i, j) decodes z = (g[j], g[i]).

    z1 grows left to right, z2 top to bottom (the seed's layout). With more
    than two latent dimensions, the others are held at 0 (the prior's mean).
    """
    if latent_dim < 2:
        raise ValueError("a grid needs at least two latent dimensions")
    g = grid_coordinates(n)
    z = np.zeros((n * n, latent_dim), dtype="float32")
    z[:, 0] = np.tile(g, n)
    z[:, 1] = np.repeat(g, n)
    return z


def tile_digits(digits, n: int):
    """(n·n, 28, 28[, 1]) digits, row by row -> one (28·n, 28·n) image."""
    digits = np.asarray(digits).reshape(n, n, 28, 28)
    return digits.transpose(0, 2, 1, 3).reshape(n * 28, n * 28)


def grid_cells(grid, n: int = 15):
    """One (28·n, 28·n) grid image -> its (n·n, 28, 28) digits, row by row:
    the inverse of `tile_digits`."""
    cells = np.asarray(grid).reshape(n, 28, n, 28).transpose(0, 2, 1, 3)
    return cells.reshape(n * n, 28, 28)


def decode_grid(decoder, n: int = 15):
    """A (28·n, 28·n) float image in [0, 1]: the decoder's digit for each cell."""
    z = grid_latents(n, decoder.input_shape[-1])
    digits = decoder.predict(z, batch_size=len(z), verbose=0)
    return tile_digits(digits, n)


def save_grid_png(image, path):
    """Writes a [0, 1] grayscale image as an 8-bit PNG, atomically."""
    from PIL import Image

    pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="L").save(tmp, format="PNG")


# ----------------------------------------------------------------------------
# Plots (matplotlib; each returns its figure)
# ----------------------------------------------------------------------------


def plot_digits(images, labels=None, ncols=10, title=None):
    """A row-major gallery of digits, with labels if given."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 1.0))
    for index, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if index < len(images):
            ax.imshow(images[index].squeeze(), cmap="gray_r", vmin=0, vmax=1)
            if labels is not None:
                ax.set_title(str(labels[index]), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reconstructions(originals, reconstructions, n=10):
    """Originals on the top row, their reconstructions underneath."""
    pairs = np.concatenate([np.asarray(originals[:n]), np.asarray(reconstructions[:n])])
    fig = plot_digits(pairs, ncols=n)
    fig.axes[0].set_title("original", fontsize=9, loc="left")
    fig.axes[n].set_title("reconstruction", fontsize=9, loc="left")
    return fig


def plot_latent_scatter(z_mean, labels, ax=None):
    """Test images' z_mean, coloured by their true digit."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    points = ax.scatter(z_mean[:, 0], z_mean[:, 1], c=labels, cmap="tab10", s=2)
    ax.figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return ax.figure


def plot_history(history):
    """Loss, reconstruction and KL per epoch (train and, if present, validation)."""
    import matplotlib.pyplot as plt

    keys = [k for k in ("loss", "reconstruction", "kl") if k in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], marker="o", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label="test")
        ax.set_title(f"{key} (nats per image)")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_grid(image, n=15, ax=None):
    """The decoded grid with its latent coordinates on the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
    g = grid_coordinates(n)
    ticks = np.arange(n) * 28 + 13.5
    ax.set_xticks(ticks[::2], [f"{v:.1f}" for v in g[::2]])
    ax.set_yticks(ticks[::2], [f"{v:.1f}" for v in g[::2]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return ax.figure


# ============================================================================
# Apart from the model: the digit classifier, whole runs, files
# ============================================================================


# ----------------------------------------------------------------------------
# A digit classifier, to read a grid without a human
# ----------------------------------------------------------------------------


def build_classifier() -> keras.Model:
    """A small convnet for MNIST digits (about 99.2% test accuracy in 3 epochs)."""
    inputs = keras.Input(shape=IMAGE_SHAPE)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digit_classifier")


def classifier_path() -> Path:
    return (
        Path(__file__).resolve().parent / "results" / "classifier" / "classifier.keras"
    )


def load_or_train_classifier(data=None, path=None, epochs=3, seed=0):
    """The digit classifier, trained once on MNIST's training set and cached.

    Returns (model, test_accuracy); the accuracy is stored beside the model.
    """
    path = Path(path) if path is not None else classifier_path()
    info = path.with_suffix(".json")
    if path.is_file() and info.is_file():
        model = keras.saving.load_model(path)
        return model, json.loads(info.read_text())["test_accuracy"]
    (x_train, y_train), (x_test, y_test) = load_mnist(data)
    keras.utils.set_random_seed(seed)
    model = build_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_json({"test_accuracy": float(accuracy), "epochs": epochs}, info)
    return model, float(accuracy)


HELD_MIN_CELLS = 3  # one confident cell is luck; a digit with 3 has a region


def digits_held(confident_cells_per_digit, min_cells=HELD_MIN_CELLS) -> list[int]:
    """The digits a grid holds: those read with confidence in >= min_cells cells."""
    return [d for d, n in enumerate(confident_cells_per_digit) if n >= min_cells]


def grid_digit_check(classifier, grid, n=15, confidence=0.9):
    """Which digits a classifier reads in the grid's n·n cells.

    Returns the label and confidence of every cell, the sorted set of digits
    read with at least `confidence`, and the share of such confident cells.
    """
    cells = grid_cells(grid, n)
    probabilities = classifier.predict(cells[..., None], verbose=0)
    labels, confidences = probabilities.argmax(-1), probabilities.max(-1)
    sure = confidences >= confidence
    return {
        "labels": labels.reshape(n, n).tolist(),
        "digits_found": sorted({int(d) for d in labels[sure]}),
        "confident_share": float(sure.mean()),
        "confident_cells_per_digit": np.bincount(labels[sure], minlength=10).tolist(),
    }


# ----------------------------------------------------------------------------
# Whole runs: what `python vae.py` and the training chapter do
# ----------------------------------------------------------------------------

RESULTS_ENV = "VAE_RESULTS_DIR"
RUN_FILES = ("grid.png", "metrics.json", "history.json", "vae.weights.h5")
MANIFEST = "run.json"


class ConfigError(ValueError):
    """A setting the code cannot take (the message names the flag)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, and TerminateOnNaN stopped the run."""


class IncompleteRun(ValueError):
    """A results folder that does not hold exactly one finished run."""


def results_dir() -> Path:
    """Where training writes: results/vae, or results/vae-fast in fast mode.

    Anchored at this file, so notebooks in chapters/ and `vae.py` agree, and a
    smoke run never overwrites the real results; `VAE_RESULTS_DIR` moves the
    whole results folder (the book build keeps its own, beside its HTML).
    """
    root = os.environ.get(RESULTS_ENV)
    root = Path(root) if root else Path(__file__).resolve().parent / "results"
    return root / ("vae-fast" if fast_mode() else "vae")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), recorded with every run."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cores_used() -> int:
    """The cores this process may run on: fewer than the machine's under `taskset`."""
    if hasattr(os, "sched_getaffinity"):  # Linux; elsewhere, the whole machine
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> dict:
    """Which machine a run's times and scores come from (CPU, cores, native bf16)."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_used": cores_used(),
        "native_bf16": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
    }


def resolve_precision(precision: str, flags: set[str] | None = None):
    """("float32" | "bfloat16", why): what `auto` means on this machine.

    bfloat16 pays only where the hardware computes it natively (AVX512_BF16 or
    AMX on x86 CPUs); elsewhere it is emulated and slower than float32.
    """
    if precision != "auto":
        return precision, "asked for"
    flags = cpu_flags() if flags is None else set(flags)
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if native:
        return "bfloat16", f"auto: the CPU has {' and '.join(native)}"
    return "float32", "auto: no native bfloat16 on this CPU (no avx512_bf16/amx_bf16)"


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Layers built inside compute in `precision`; variables stay float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(
        "mixed_bfloat16" if precision == "bfloat16" else "float32"
    )
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(vae, config):
    """A float32 copy of a (mixed-precision) model: evaluation runs in float32."""
    copy = build_vae(config.latent_dim, config.kl_weight, config.seed)
    copy[0].set_weights(vae.get_weights())
    return copy


@contextlib.contextmanager
def data_parallel(devices: int = 1, batch_sizes=()):
    """Models built and trained inside are replicated on `devices` devices, and
    each batch is split between them (`keras.distribution.DataParallel`).

    Keras' distribution API runs on JAX. On a CPU, JAX shows one device unless
    XLA_FLAGS has --xla_force_host_platform_device_count=N (`vae.py --devices`
    sets it): the documented way to run multi-device code on one machine.
    `batch_sizes` are the sizes the batches will have; each must split evenly.
    """
    if devices == 1:
        yield None
        return
    if keras.backend.backend() != "jax":
        raise ConfigError(
            f"--devices {devices}: data-parallel training needs KERAS_BACKEND=jax "
            f"(keras.distribution); this process runs {keras.backend.backend()}"
        )
    found = keras.distribution.list_devices()
    if len(found) < devices:
        raise ConfigError(
            f"--devices {devices}: JAX sees {len(found)} device(s) "
            f"({', '.join(found)}); on a CPU set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={devices} before JAX starts"
        )
    uneven = sorted({b for b in batch_sizes if b % devices})
    if uneven:
        raise ConfigError(
            f"--devices {devices}: a batch of {uneven[0]} images does not split "
            f"evenly over {devices} devices; choose a --batch-size (and data) "
            "whose batches do"
        )
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=found[:devices])
    )
    try:
        yield keras.distribution.distribution()
    finally:
        keras.distribution.set_distribution(previous)


def device_names(devices: int) -> str:
    return ", ".join(keras.distribution.list_devices()[:devices])


def batch_sizes(images: int, batch_size: int) -> set[int]:
    """The sizes of an epoch's batches: full ones and the last, shorter one."""
    return {min(batch_size, images)} | ({images % batch_size} - {0})


def train_and_save(
    config: RunConfig = DEFAULTS,
    output_dir=None,
    data=None,
    verbose="auto",
    devices: int = 1,
):
    """The whole default run, as `python vae.py` does it: train, score, grid, save.

    The run's files (grid.png, metrics.json, history.json, vae.weights.h5 and
    the manifest run.json) are written into a fresh folder beside `output_dir`
    (default `results_dir()`) and swapped in whole at the end: an interrupted
    run leaves the previous run as it was. In fast mode it trains one epoch on
    a small subset. With `devices` > 1 it trains data-parallel (JAX only,
    `data_parallel`); scoring runs as usual. Returns (vae, encoder, decoder,
    metrics, history).
    """
    for problem in config.problems():
        raise ConfigError(problem)
    out = Path(output_dir) if output_dir is not None else results_dir()
    (x_train, y_train), (x_test, y_test) = load_mnist(data)
    x_train, _, x_test, _ = fast_subset(x_train, y_train, x_test, y_test)
    for problem in config.for_data(len(x_train)):
        raise ConfigError(problem)
    epochs = 1 if fast_mode() else config.epochs
    precision, precision_why = resolve_precision(config.precision)
    timer = Stopwatch()

    sizes = batch_sizes(len(x_train), config.batch_size)
    sizes |= batch_sizes(len(x_test), config.batch_size)

    keras.utils.set_random_seed(config.seed)
    with data_parallel(devices, sizes):
        with dtype_policy(precision):
            vae, encoder, decoder = build_vae(
                config.latent_dim, config.kl_weight, config.seed
            )
        compile_for_run(
            vae,
            len(x_train),
            epochs,
            config.batch_size,
            config.learning_rate,
            config.lr_warmup_epochs,
            config.xla,
        )
        with timer("train"):
            history = train_vae(
                vae,
                x_train,
                x_test,
                epochs=epochs,
                batch_size=config.batch_size,
                kl_warmup_epochs=config.kl_warmup_epochs,
                kl_cycles=config.kl_cycles,
                verbose=verbose,
                seed=config.seed,
            )
    if len(history["loss"]) < epochs or not np.all(np.isfinite(history["loss"])):
        raise TrainingDiverged(
            f"the loss became NaN or infinite in epoch {len(history['loss'])} of "
            f"{epochs}; training stopped and no results were written (try a lower "
            "--learning-rate or a longer --lr-warmup-epochs)"
        )
    if precision != "float32":
        vae, encoder, decoder = as_float32(vae, config)

    scores, grid, seconds = score_run(encoder, decoder, x_test, config, data)
    timer.seconds |= seconds

    metrics = {
        "run_id": uuid.uuid4().hex,
        **scores,
        "config": config.to_dict(),
        "epochs": epochs,  # the config's, or 1 in fast mode
        "precision_used": precision,
        "precision_why": precision_why,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "fast_mode": fast_mode(),
        "devices": devices,
        **{f"{name}_seconds": seconds for name, seconds in timer.seconds.items()},
        "seconds_per_epoch": history["seconds"],
        "versions": versions(),
        "machine": machine(),
    }
    with staged_directory(out, keep=(*RUN_FILES, MANIFEST)) as stage:
        save_grid_png(grid, stage / "grid.png")
        save_weights(vae, stage / "vae.weights.h5")
        write_json(history, stage / "history.json")
        write_json(metrics, stage / "metrics.json")
        write_manifest(stage, metrics["run_id"])
    return vae, encoder, decoder, metrics, history


def score_run(encoder, decoder, x_test, config: RunConfig, data=None):
    """A trained model's scores (β = 1), its grid and the grid's check.

    What `train_and_save` records and the benchmark compares: one function,
    so the two cannot score differently. Returns (scores, grid, seconds).
    """
    timer = Stopwatch()
    with timer("eval"):
        elbo = evaluate_elbo(encoder, decoder, x_test, seed=config.seed)
        kl_dims = kl_per_dimension(encoder, x_test)
    scores = {
        "test_neg_elbo": elbo["neg_elbo"],
        "test_reconstruction": elbo["reconstruction"],
        "test_kl": elbo["kl"],
        "test_kl_per_dimension": [float(v) for v in kl_dims],
    }
    if config.iw_k:
        with timer("iw"):
            n = len(x_test) if config.iw_images is None else config.iw_images
            n = min(n, len(x_test), FAST_IW_IMAGES if fast_mode() else n)
            bound = importance_weighted_log_likelihood(
                encoder, decoder, x_test[:n], config.iw_k, config.seed
            )
        mean, error = summarize(bound)
        scores |= {"test_iw_bound": mean, "test_iw_standard_error": error}
        scores |= {"iw_k": config.iw_k, "iw_images": n}
    with timer("grid"):
        grid = decode_grid(decoder, config.grid_size)
    if config.grid_check:
        with timer("check"):
            classifier, accuracy = load_or_train_classifier(data)
            found = grid_digit_check(classifier, grid, config.grid_size)
        scores |= {
            "grid_digits_found": found["digits_found"],
            "grid_confident_share": found["confident_share"],
            "grid_confident_cells_per_digit": found["confident_cells_per_digit"],
            "classifier_test_accuracy": accuracy,
        }
    return scores, grid, timer.seconds


def write_manifest(folder: Path, run_id: str):
    """run.json: the run's id and the sha256 of each of its files."""
    files = {name: sha256(folder / name) for name in RUN_FILES}
    write_json({"run_id": run_id, "files": files}, folder / MANIFEST)


def check_run(folder) -> dict:
    """The metrics of the one finished run in `folder`; IncompleteRun otherwise.

    Every file must be the one the manifest names (same sha256), and the
    metrics must carry the manifest's run id: files of two runs never mix.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError) as error:
        raise IncompleteRun(f"{folder}: no finished run ({error})") from None
    for name in RUN_FILES:
        path = folder / name
        if not path.is_file() or sha256(path) != manifest["files"].get(name):
            raise IncompleteRun(f"{folder}: {name} is missing or not this run's")
    if metrics.get("run_id") != manifest["run_id"]:
        raise IncompleteRun(f"{folder}: metrics.json belongs to another run")
    return metrics


def default_seed_runs(config: RunConfig = DEFAULTS, root=None) -> dict[int, dict]:
    """The committed runs of `config` with any seed, as {seed: metrics}: the
    records behind "the default over seeds" (results/seed-screen/, and the
    study's default and seed runs).

    A run matches when every setting but the seed equals `config`'s; a setting
    its record lacks did not exist yet, so it had what is now the default.
    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    folders = [
        *sorted((root / "results" / "seed-screen").glob("*")),
        root / "results" / "study" / "default",
        *sorted((root / "results" / "study").glob("seed-*")),
    ]
    wanted = {k: v for k, v in config.to_dict().items() if k != "seed"}
    runs = {}
    for folder in folders:
        try:
            run_id = json.loads((folder / MANIFEST).read_text())["run_id"]
            metrics = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError, KeyError):
            continue
        settings = metrics["config"]
        if metrics.get("run_id") != run_id or metrics.get("fast_mode"):
            continue
        if all(settings.get(k, v) == v for k, v in wanted.items()):
            runs.setdefault(settings["seed"], metrics)
    return runs


def load_or_train(output_dir=None, data=None):
    """The trained default model: loaded from `output_dir` if one finished run
    is there (by `python vae.py` or the training chapter), else trained now.

    Returns (vae, encoder, decoder, metrics, history).
    """
    out = Path(output_dir) if output_dir is not None else results_dir()
    try:
        metrics = check_run(out)
    except IncompleteRun as reason:
        print(f"{reason}: training the default model now")
        return train_and_save(output_dir=out, data=data)
    config = metrics["config"]
    vae, encoder, decoder = build_vae(
        config["latent_dim"], config["kl_weight"], config["seed"]
    )
    load_weights(vae, out / "vae.weights.h5")
    history = json.loads((out / "history.json").read_text())
    return vae, encoder, decoder, metrics, history


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions that shape the numbers (printed at the top of the book)."""
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "backend": keras.backend.backend(),
        **backend_version(),
    }


def backend_version() -> dict[str, str]:
    """The version of the backend library Keras runs on, if it is not TF."""
    backend = keras.backend.backend()
    if backend in ("jax", "torch"):
        return {backend: importlib.import_module(backend).__version__}
    return {}


def versions_line() -> str:
    """One line for the top of a page: what it was executed with."""
    v = versions()
    backend = v["backend"]
    engine = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}[backend]
    engine_version = v.get(backend, v["tensorflow"])
    return (
        f"Keras {v['keras']} on {engine} {engine_version} (KERAS_BACKEND={backend}), "
        f"Python {v['python']}, NumPy {v['numpy']}"
    )


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary name beside `path`; renames it over `path` on success.

    An interrupted write leaves the old file (or none), never half a file.
    The temporary name keeps the suffix (Keras checks `.weights.h5`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(data, path):
    """Strict JSON (NaN or infinity raise: strict readers reject them), atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_text(text: str, path):
    """A text file, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_report(report: dict, text: str, folder, stem: str):
    """A benchmark's record as STEM.json (strict) and its table as STEM.md."""
    write_json(report, Path(folder) / f"{stem}.json")
    write_text(text, Path(folder) / f"{stem}.md")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def staged_directory(path, keep=()):
    """Yields an empty folder beside `path`; on success it replaces `path` whole.

    The names in `keep` are the run's own files: anything else already in
    `path` (a log a user is writing there, say) moves into the new folder.
    On an error or an interrupt the staging folder is removed and `path`
    stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-new-"))
    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp's 0700 would hide results
        old = None
        if path.exists():
            for entry in path.iterdir():
                if entry.name not in keep:
                    os.replace(entry, stage / entry.name)
            old = path.with_name(f".{path.name}-old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(stage, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if stage.exists():
            shutil.rmtree(stage)


class Stopwatch:
    """Wall seconds per named stage: `with timer("train"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start


def save_weights(vae, path):
    with atomic_path(path) as tmp:
        vae.save_weights(tmp, overwrite=True)


def load_weights(vae, path):
    """Loads weights saved by `save_weights`; a clear error if they don't fit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        vae.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{path} does not hold weights for this model "
            f"(latent_dim={vae.get_layer('encoder').output[0].shape[-1]}): "
            f"{str(error).splitlines()[0]}"
        ) from error

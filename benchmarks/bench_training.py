"""Training benchmark: three VAE configurations, timed and scored in one run.

    python benchmarks/bench_training.py            # full run, ~45 min on 2 cores
    python benchmarks/bench_training.py --quick    # smoke run, a minute or two

Configurations, all trained on the same 60,000 training images:

  a  the seed: the book's architecture (vh.build_vae), batch 16, RMSprop
     (lr 1e-3, constant), the seed's β = vh.seed_kl_weight(2) ≈ 0.392, no KL
     warm-up, 10 epochs, plain fit() without XLA.
  b  the keras.io "Variational AutoEncoder" example: its smaller encoder and
     decoder, sum BCE + KL (β = 1), batch 128, Adam, 30 epochs, compiled as
     the example does (jit_compile="auto": off on a CPU-only machine).
     Unlike the example, which trains on the training and test images
     together, it trains on the training images only, so the test score is
     on unseen images.
  c  `python vae.py`'s default (vh.DEFAULTS through vh.build_vae,
     vh.compile_for_run, vh.train_vae): Adam, learning rate warmed up to 2e-3
     over half an epoch then cosine-decayed, β warmed up from 0 to 1 over 3
     epochs, no XLA, batch 32, 10 epochs, batches from vh.image_batches.

No configuration runs a validation pass during fit() (vae.py passes the test
set as validation data): seconds per epoch are training only, and the test
set is scored once afterwards, the same way for all three.

Per configuration it records seconds per epoch, wall time of fit(), the
time outside training steps, training throughput in GFLOP/s, the test
negative ELBO (β = 1), the importance-weighted test log-likelihood and the
grid check; and, once per run, the rate of a large fp32 matmul and of a
reference training step (the seed architecture in raw TensorFlow, timed with
and without XLA; the faster is the reference), as yardsticks for the
throughput. Writes training.json and training.md into results/bench/
(results/bench-quick/ with --quick), each atomically. Definitions:
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import vae_helpers as vh

keras, tf, layers = vh.keras, vh.tf, vh.layers

ROOT = Path(__file__).resolve().parents[1]
PROG = "bench_training.py"
GRID_SIZE = 15
SEED = vh.DEFAULTS["seed"]
TRAIN_FLOPS_PER_MAC = 2 * 3  # 2 FLOPs per multiply-add; backward ≈ 2x forward

# Sizes of the full run and of the --quick smoke run.
FULL = {
    "train_images": None,  # all 60,000
    "elbo_images": None,  # all 10,000
    "epochs": None,  # each configuration's own
    "iw_images": vh.DEFAULTS["iw_images"],
    "iw_k": vh.DEFAULTS["iw_k"],
    "matmul_n": 4096,
    "matmul_repeats": 5,
    "ref_warmup_steps": 10,
    "ref_steps": 20,
    "ref_repeats": 3,
}
QUICK = {
    "train_images": 1024,
    "elbo_images": 256,
    "epochs": 1,
    "iw_images": 16,
    "iw_k": 50,
    "matmul_n": 1024,
    "matmul_repeats": 3,
    "ref_warmup_steps": 2,
    "ref_steps": 3,
    "ref_repeats": 2,
}
# The reference step runs at the default's batch size, so (c) is compared with
# the same work per step.
REFERENCE_BATCH = vh.DEFAULTS["batch_size"]


@dataclass(frozen=True)
class Config:
    key: str
    name: str
    epochs: int
    batch_size: int
    optimizer: str
    kl_weight: float
    kl_warmup_epochs: float
    description: str


CONFIGS = {
    "a": Config(
        "a",
        "seed",
        10,
        16,
        "RMSprop, lr 1e-3 constant",
        vh.seed_kl_weight(2),
        0.0,
        "book architecture, plain fit() without XLA",
    ),
    "b": Config(
        "b",
        "keras.io",
        30,
        128,
        "Adam, lr 1e-3 constant",
        1.0,
        0.0,
        "keras.io example's smaller model, jit_compile='auto', train set only",
    ),
    "c": Config(
        "c",
        "default",
        vh.DEFAULTS["epochs"],
        vh.DEFAULTS["batch_size"],
        f"Adam, lr 0 -> {vh.DEFAULTS['learning_rate']:g} over "
        f"{vh.DEFAULTS['lr_warmup_epochs']:g} epoch, cosine to 0",
        vh.DEFAULTS["kl_weight"],
        vh.DEFAULTS["kl_warmup_epochs"],
        "python vae.py: vh.build_vae + compile_for_run + train_vae (tf.data input)",
    ),
}


# ----------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------


def _spatial(shape, data_format):
    """The product of a 4-D shape's two spatial sizes."""
    dims = shape[1:3] if data_format == "channels_last" else shape[2:4]
    return math.prod(int(d) for d in dims)


def layer_macs(layer) -> int:
    """Forward multiply-adds per image of one layer (biases and activations: 0).

    Conv2D: output positions x kernel size. Conv2DTranspose: input positions x
    kernel size (each input value scatters onto a kh x kw patch). Dense: kernel
    size x any positions before the last axis. Layers without trainable
    weights cost 0; any other layer with weights is an error, so nothing is
    left out silently.
    """
    if isinstance(layer, layers.Conv2DTranspose):
        kernel = math.prod(layer.kernel.shape)
        return _spatial(layer.input.shape, layer.data_format) * kernel
    if isinstance(layer, layers.Conv2D):
        kernel = math.prod(layer.kernel.shape)
        return _spatial(layer.output.shape, layer.data_format) * kernel
    if isinstance(layer, layers.Dense):
        positions = math.prod(int(d) for d in layer.input.shape[1:-1])
        return positions * math.prod(layer.kernel.shape)
    if layer.trainable_weights:
        raise ValueError(f"no FLOP count for layer {layer.name!r} ({type(layer)})")
    return 0


def model_macs(model) -> dict[str, int]:
    """Forward multiply-adds per image of every counted layer, nested models
    included, keyed by "model/layer" name."""
    counts = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for name, macs in model_macs(layer).items():
                counts[f"{layer.name}/{name}"] = macs
        elif macs := layer_macs(layer):
            counts[layer.name] = macs
    return counts


def training_flops_per_image(forward_macs: int) -> int:
    """2 FLOPs per multiply-add, x 3 for the forward and backward passes."""
    return TRAIN_FLOPS_PER_MAC * forward_macs


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------


def build_keras_io_encoder(latent_dim: int = 2) -> keras.Model:
    """The keras.io example's encoder, returning (z_mean, z_log_var)."""
    inputs = keras.Input(shape=vh.IMAGE_SHAPE, name="image")
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name="encoder")


def build_keras_io_decoder(latent_dim: int = 2) -> keras.Model:
    """The keras.io example's decoder: z -> Bernoulli means, (28, 28, 1)."""
    inputs = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(7 * 7 * 64, activation="relu")(inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(inputs, outputs, name="decoder")


def build_keras_io_vae(seed: int = SEED):
    """The keras.io model wired like vh.build_vae: vh.Sampling, then the book's
    loss layer (sum BCE + KL, β = 1), so the loss is identical in form.

    Returns (vae, encoder, decoder).
    """
    encoder, decoder = build_keras_io_encoder(), build_keras_io_decoder()
    inputs = keras.Input(shape=vh.IMAGE_SHAPE, name="image")
    z_mean, z_log_var = encoder(inputs)
    z = vh.Sampling(seed=seed, name="sampling")([z_mean, z_log_var])
    outputs = vh.CustomVariationalLayer(1.0, name="vae_loss")(
        [inputs, decoder(z), z_mean, z_log_var]
    )
    return keras.Model(inputs, outputs, name="vae_keras_io"), encoder, decoder


def build_config_model(key: str, seed: int = SEED):
    """(vae, encoder, decoder) of configuration a, b or c, uncompiled."""
    if key == "b":
        return build_keras_io_vae(seed)
    config = CONFIGS[key]
    return vh.build_vae(vh.DEFAULTS["latent_dim"], config.kl_weight, seed)


# ----------------------------------------------------------------------------
# Training, timed
# ----------------------------------------------------------------------------


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step (on_train_batch_begin -> _end) and epoch.

    Each hook is one perf_counter() call and a list append: about a
    microsecond, measured by `timer_overhead_seconds`.
    """

    def __init__(self):
        super().__init__()
        self.step_seconds, self.epoch_seconds = [], []
        self._step_start = self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_seconds.append(time.perf_counter() - self._step_start)


def timer_overhead_seconds(calls: int = 20000) -> float:
    """Seconds one begin/end pair of StepTimer's batch hooks costs."""
    timer = StepTimer()
    start = time.perf_counter()
    for batch in range(calls):
        timer.on_train_batch_begin(batch)
        timer.on_train_batch_end(batch)
    return (time.perf_counter() - start) / calls


def fit_plain(key, optimizer, jit_compile):
    """A plain compile() + fit() with a constant learning rate, as (a) and (b) do."""

    def fit(vae, x_train, epochs, timer):
        vae.compile(optimizer=optimizer(), loss=None, jit_compile=jit_compile)
        vae.fit(
            x_train,
            None,
            epochs=epochs,
            batch_size=CONFIGS[key].batch_size,
            shuffle=True,
            callbacks=[timer],
            verbose=2,
        )

    return fit


def fit_default(vae, x_train, epochs, timer):
    """Configuration c: the helpers `python vae.py` calls, with its defaults."""
    d = vh.DEFAULTS
    vh.compile_for_run(vae, len(x_train), epochs)
    vh.train_vae(
        vae,
        x_train,
        None,
        epochs=epochs,
        batch_size=d["batch_size"],
        kl_warmup_epochs=d["kl_warmup_epochs"],
        verbose=2,
        callbacks=[timer],
    )


FITS = {
    # a: the seed's RMSprop, no XLA (it predates it).
    "a": fit_plain("a", keras.optimizers.RMSprop, jit_compile=False),
    # b: Adam defaults, compiled as the keras.io example is ("auto": off on a CPU).
    "b": fit_plain("b", keras.optimizers.Adam, jit_compile="auto"),
    "c": fit_default,
}


def timed_training(key, x_train, epochs, seed=SEED):
    """Builds and trains one configuration; returns (encoder, decoder, facts)."""
    keras.utils.set_random_seed(seed)
    vae, encoder, decoder = build_config_model(key, seed)
    timer = StepTimer()
    start = time.perf_counter()
    FITS[key](vae, x_train, epochs, timer)
    wall = time.perf_counter() - start
    facts = {
        "xla": bool(vae.jit_compile),
        "wall_seconds": wall,
        "seconds_per_epoch": timer.epoch_seconds,
        "step_seconds": timer.step_seconds,
    }
    return vae, encoder, decoder, facts


def timing_summary(facts, flops_per_image, images, batch_size, epochs):
    """Seconds per epoch, time outside steps and throughput from raw timings."""
    steps = np.asarray(facts.pop("step_seconds"))
    wall = facts["wall_seconds"]
    median_epoch = float(np.median(facts["seconds_per_epoch"]))
    # Median step: steady state (the first step also traces/compiles).
    median_step = float(np.median(steps[1:] if len(steps) > 1 else steps))
    flops_per_epoch = flops_per_image * images
    return {
        **facts,
        "median_seconds_per_epoch": median_epoch,
        "steps": len(steps),
        "step_seconds_total": float(steps.sum()),
        "first_step_seconds": float(steps[0]),
        "median_step_seconds": median_step,
        "outside_steps_seconds": wall - float(steps.sum()),
        "outside_steps_share": (wall - float(steps.sum())) / wall,
        "train_flops_per_epoch": flops_per_epoch,
        "gflops_per_s": flops_per_epoch / median_epoch / 1e9,
        "gflops_per_s_wall": flops_per_epoch * epochs / wall / 1e9,
        "gflops_per_s_steady_step": flops_per_image * batch_size / median_step / 1e9,
    }


# ----------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------


def score(encoder, decoder, x_test, iw_images, iw_k, classifier, seed=SEED):
    """Test −ELBO (β = 1), IW log-likelihood ± SE and the grid check."""
    start = time.perf_counter()
    elbo = vh.evaluate_elbo(encoder, decoder, x_test, seed=seed)
    n = len(x_test) if iw_images is None else min(iw_images, len(x_test))
    ll = vh.importance_weighted_log_likelihood(encoder, decoder, x_test[:n], iw_k, seed)
    mean, error = vh.summarize(ll)
    grid = vh.decode_grid(decoder, GRID_SIZE)
    check = vh.grid_digit_check(classifier, grid, GRID_SIZE)
    scores = {
        "test_neg_elbo": elbo["neg_elbo"],
        "test_reconstruction": elbo["reconstruction"],
        "test_kl": elbo["kl"],
        "elbo_test_images": len(x_test),
        "test_iw_log_likelihood": mean,
        "test_iw_standard_error": error,
        "iw_k": iw_k,
        "iw_images": n,
        "grid_digits_found": check["digits_found"],
        "grid_confident_share": check["confident_share"],
        "score_seconds": time.perf_counter() - start,
    }
    return scores, grid


# ----------------------------------------------------------------------------
# Yardsticks: a large matmul and a raw reference training step
# ----------------------------------------------------------------------------


def matmul_rate(n: int, repeats: int, seed: int = 0) -> dict:
    """Best-of-`repeats` fp32 (n x n) @ (n x n) in TensorFlow, in GFLOP/s."""
    a = tf.random.stateless_uniform((n, n), seed=(seed, 1))
    b = tf.random.stateless_uniform((n, n), seed=(seed, 2))
    float(tf.matmul(a, b)[0, 0])  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        float(tf.matmul(a, b)[0, 0])  # reading a value waits for the result
        best = min(best, time.perf_counter() - start)
    return {
        "n": n,
        "repeats": repeats,
        "best_seconds": best,
        "gflops_per_s": 2 * n**3 / best / 1e9,
    }


# The seed architecture (vh.build_encoder / vh.build_decoder, latent 2) as
# raw weight shapes: conv kernels (kh, kw, in, out), transposed (kh, kw, out, in).
REFERENCE_SHAPES = {
    "conv1": (3, 3, 1, 32),
    "conv2": (3, 3, 32, 64),
    "conv3": (3, 3, 64, 64),
    "conv4": (3, 3, 64, 64),
    "dense": (14 * 14 * 64, 32),
    "z_mean": (32, 2),
    "z_log_var": (32, 2),
    "dec_dense": (2, 14 * 14 * 64),
    "deconv": (3, 3, 32, 64),
    "out_conv": (3, 3, 32, 1),
}


def reference_parameters(seed: int = 0) -> dict[str, tuple]:
    """Glorot-uniform kernels and zero biases as tf.Variables, per layer."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in REFERENCE_SHAPES.items():
        field = math.prod(shape[:-2])
        fan_in, fan_out = field * shape[-2], field * shape[-1]
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        kernel = rng.uniform(-limit, limit, shape).astype("float32")
        bias_size = shape[-2] if name == "deconv" else shape[-1]
        params[name] = (
            tf.Variable(kernel, name=f"{name}_kernel"),
            tf.Variable(tf.zeros(bias_size), name=f"{name}_bias"),
        )
    return params


def reference_loss(p, x, noise_seed, kl_weight=1.0):
    """Batch-mean negative ELBO of the seed architecture, in raw TF ops."""

    def conv(h, name, stride=1):
        kernel, bias = p[name]
        return tf.nn.conv2d(h, kernel, stride, "SAME") + bias

    def dense(h, name):
        kernel, bias = p[name]
        return tf.matmul(h, kernel) + bias

    batch = tf.shape(x)[0]
    h = tf.nn.relu(conv(x, "conv1"))
    h = tf.nn.relu(conv(h, "conv2", 2))
    h = tf.nn.relu(conv(h, "conv3"))
    h = tf.nn.relu(conv(h, "conv4"))
    h = tf.nn.relu(dense(tf.reshape(h, (batch, -1)), "dense"))
    z_mean, z_log_var = dense(h, "z_mean"), dense(h, "z_log_var")
    epsilon = tf.random.stateless_normal(tf.shape(z_mean), seed=noise_seed)
    z = z_mean + tf.exp(0.5 * z_log_var) * epsilon
    g = tf.reshape(tf.nn.relu(dense(z, "dec_dense")), (batch, 14, 14, 64))
    kernel, bias = p["deconv"]
    g = tf.nn.conv2d_transpose(g, kernel, (batch, 28, 28, 32), 2, "SAME") + bias
    logits = conv(tf.nn.relu(g), "out_conv")
    reconstruction = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), (1, 2, 3)
    )
    kl = -0.5 * tf.reduce_sum(
        1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1
    )
    return tf.reduce_mean(reconstruction + kl_weight * kl)


def make_reference_step(params, jit_compile=True, lr=1e-3, beta_1=0.9, beta_2=0.999):
    """One tf.function: forward + backward + Adam update (Keras' Adam formula).

    Returns (step, parameter count); step(x, noise_seed) returns the loss.
    """
    variables = [v for pair in params.values() for v in pair]
    moments = [tf.Variable(tf.zeros_like(v)) for v in variables]
    velocities = [tf.Variable(tf.zeros_like(v)) for v in variables]
    iteration = tf.Variable(0.0)

    @tf.function(jit_compile=jit_compile)
    def step(x, noise_seed):
        with tf.GradientTape() as tape:
            loss = reference_loss(params, x, noise_seed)
        gradients = tape.gradient(loss, variables)
        t = iteration.assign_add(1.0)
        rate = lr * tf.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
        for v, g, m, s in zip(variables, gradients, moments, velocities, strict=True):
            m.assign(beta_1 * m + (1.0 - beta_1) * g)
            s.assign(beta_2 * s + (1.0 - beta_2) * tf.square(g))
            v.assign_sub(rate * m / (tf.sqrt(s) + 1e-7))
        return loss

    return step, sum(math.prod(v.shape) for v in variables)


class ReferenceRunner:
    """Calls a reference step on up to 8 fixed batches of REFERENCE_BATCH images,
    in turn."""

    def __init__(self, x_train, jit_compile, seed=0):
        self.step, self.parameters = make_reference_step(
            reference_parameters(seed), jit_compile
        )
        count = max(1, min(8, len(x_train) // REFERENCE_BATCH))
        self.batches = [
            tf.constant(x_train[i * REFERENCE_BATCH : (i + 1) * REFERENCE_BATCH])
            for i in range(count)
        ]
        self.seed, self.calls = seed, 0

    def run(self, steps: int) -> float:
        """Runs `steps` steps; returns the last loss (reading it waits for it)."""
        loss = None
        for _ in range(steps):
            noise_seed = tf.constant([self.seed, self.calls], tf.int32)
            loss = self.step(self.batches[self.calls % len(self.batches)], noise_seed)
            self.calls += 1
        return float(loss)


REFERENCE_VARIANTS = {"xla": True, "no_xla": False}


def reference_step_rate(x_train, forward_macs, warmup, steps, repeats, seed=0):
    """Steady-state rate of the raw reference step at REFERENCE_BATCH (the default's).

    Times the step with XLA (tf.function(jit_compile=True)) and, as a check,
    the same tf.function without XLA. Each variant runs `warmup` steps first
    (the first one compiles); then `repeats` rounds time `steps` steps of each
    variant in turn (interleaved, so a change in the machine's load hits both)
    and each keeps its best round. The reference is the faster variant.
    """
    runners = {
        k: ReferenceRunner(x_train, jit, seed) for k, jit in REFERENCE_VARIANTS.items()
    }
    flops = training_flops_per_image(forward_macs) * REFERENCE_BATCH
    variants = {}
    for name, runner in runners.items():
        start = time.perf_counter()
        first_loss = runner.run(1)
        variants[name] = {
            "jit_compile": REFERENCE_VARIANTS[name],
            "first_step_seconds": time.perf_counter() - start,
            "first_loss": first_loss,
            "best_step_seconds": math.inf,
        }
        runner.run(max(warmup - 1, 0))
    for _ in range(repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            variants[name]["last_loss"] = runner.run(steps)
            seconds = (time.perf_counter() - start) / steps
            variants[name]["best_step_seconds"] = min(
                variants[name]["best_step_seconds"], seconds
            )
    for v in variants.values():
        v["steps_per_s"] = 1.0 / v["best_step_seconds"]
        v["gflops_per_s"] = flops / v["best_step_seconds"] / 1e9
    fastest = max(variants, key=lambda k: variants[k]["gflops_per_s"])
    return {
        "batch_size": REFERENCE_BATCH,
        "parameters": runners["xla"].parameters,
        "forward_macs_per_image": forward_macs,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "variant": fastest,
        "steps_per_s": variants[fastest]["steps_per_s"],
        "gflops_per_s": variants[fastest]["gflops_per_s"],
        "variants": variants,
    }


# ----------------------------------------------------------------------------
# Machine, report
# ----------------------------------------------------------------------------


def cpu_model() -> tuple[str, bool]:
    """The CPU's model name from /proc/cpuinfo, and whether it has AVX-512."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", False
    names = [
        ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln
    ]
    return (names[0] if names else "unknown"), " avx512f" in text


def machine_info() -> dict:
    model, avx512 = cpu_model()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "avx512": avx512,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


COLUMNS = (
    "config",
    "epochs",
    "batch",
    "s/epoch",
    "wall (s)",
    "outside steps",
    "GFLOP/s",
    "% of matmul",
    "% of ref. step",
    "test −ELBO (β=1)",
    "IW log-lik ± SE",
    "grid digits found",
    "confident share",
)


def table_row(result: dict) -> list[str]:
    """One configuration's cells of the Markdown table."""
    digits = result["grid_digits_found"]
    return [
        f"({result['key']}) {result['name']}",
        str(result["epochs"]),
        str(result["batch_size"]),
        f"{result['median_seconds_per_epoch']:.1f}",
        f"{result['wall_seconds']:.0f}",
        f"{result['outside_steps_share']:.1%}",
        f"{result['gflops_per_s']:.1f}",
        f"{result['share_of_matmul']:.1%}",
        f"{result['share_of_reference_step']:.1%}",
        f"{result['test_neg_elbo']:.2f}",
        f"{result['test_iw_log_likelihood']:.2f} ± "
        f"{result['test_iw_standard_error']:.2f}",
        f"{len(digits)}/10 ({' '.join(map(str, digits))})",
        f"{result['grid_confident_share']:.0%}",
    ]


def markdown_report(report: dict) -> str:
    """The results table and the yardsticks it is measured against."""
    machine, matmul, ref = report["machine"], report["matmul"], report["reference"]
    lines = [
        "# Training benchmark" + (" (quick smoke run)" if report["quick"] else ""),
        "",
        f"{report['date']} · {machine['cpu_model']}, {machine['usable_cores']} "
        f"cores · TensorFlow {report['versions']['tensorflow']}, Keras "
        f"{report['versions']['keras']} · {report['train_images']} training "
        "images",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
    ]
    for result in report["configs"].values():
        lines.append("| " + " | ".join(table_row(result)) + " |")
    lines += [
        "",
        "s/epoch: median over epochs. GFLOP/s: training FLOPs per epoch (6 x "
        "forward multiply-adds per image x images) / s/epoch. Outside steps: "
        "fit() wall time minus the summed per-batch step times.",
        f"Matmul: fp32 {matmul['n']}x{matmul['n']} @ {matmul['n']}x{matmul['n']}, "
        f"best of {matmul['repeats']}: {matmul['gflops_per_s']:.1f} GFLOP/s. "
        f"Reference step (seed architecture in raw TensorFlow, forward + backward "
        f"+ Adam, batch {ref['batch_size']}, best of {ref['repeats']} x "
        f"{ref['timed_steps']} steps): "
        + "; ".join(
            f"{'with' if v['jit_compile'] else 'without'} XLA "
            f"{v['steps_per_s']:.2f} steps/s = {v['gflops_per_s']:.1f} GFLOP/s"
            for v in ref["variants"].values()
        )
        + f". The faster ({ref['variant']}) is the reference.",
        "",
        "Timings were taken on a machine that may have been running other work "
        f"(load average {machine['load_average_at_start'][0]:.1f} at the start, "
        f"{machine['usable_cores']} cores).",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> None:
    """training.json and training.md, each written atomically."""
    vh.write_json(report, out / "training.json")
    with vh.atomic_path(out / "training.md") as tmp:
        Path(tmp).write_text(markdown_report(report))


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


def configuration_result(key, sizes, data, classifier, yardsticks, out):
    """Trains, times and scores one configuration; returns its JSON record."""
    config = CONFIGS[key]
    x_train, x_test = data
    epochs = sizes["epochs"] or config.epochs
    print(f"\n== ({key}) {config.name}: {config.description}", flush=True)
    vae, encoder, decoder, facts = timed_training(key, x_train, epochs)
    per_layer = model_macs(vae)
    macs = sum(per_layer.values())
    flops = training_flops_per_image(macs)
    timing = timing_summary(facts, flops, len(x_train), config.batch_size, epochs)
    scores, grid = score(
        encoder, decoder, x_test, sizes["iw_images"], sizes["iw_k"], classifier
    )
    vh.save_grid_png(grid, out / f"grid-{key}.png")
    matmul, reference = yardsticks
    return {
        "key": key,
        "name": config.name,
        "description": config.description,
        "epochs": epochs,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "kl_weight": config.kl_weight,
        "kl_warmup_epochs": config.kl_warmup_epochs,
        "train_images": len(x_train),
        "forward_macs_per_image": macs,
        "forward_macs_per_layer": per_layer,
        "train_flops_per_image": flops,
        **timing,
        "share_of_matmul": timing["gflops_per_s"] / matmul["gflops_per_s"],
        "share_of_reference_step": timing["gflops_per_s"] / reference["gflops_per_s"],
        "share_of_reference_xla_step": timing["gflops_per_s"]
        / reference["variants"]["xla"]["gflops_per_s"],
        **scores,
    }


def yardsticks(x_train, sizes) -> tuple[dict, dict]:
    """The matmul and reference-step rates the configurations are compared to."""
    print("timing a matmul and the reference step ...", flush=True)
    matmul = matmul_rate(sizes["matmul_n"], sizes["matmul_repeats"])
    seed_vae = vh.build_vae()[0]
    reference = reference_step_rate(
        x_train,
        sum(model_macs(seed_vae).values()),
        sizes["ref_warmup_steps"],
        sizes["ref_steps"],
        sizes["ref_repeats"],
    )
    keras_parameters = sum(math.prod(w.shape) for w in seed_vae.trainable_weights)
    if reference["parameters"] != keras_parameters:
        raise RuntimeError(
            f"reference step has {reference['parameters']} parameters, the seed "
            f"model {keras_parameters}: they are not the same architecture"
        )
    print(
        f"matmul {matmul['gflops_per_s']:.1f} GFLOP/s; reference step "
        + ", ".join(
            f"{name} {v['steps_per_s']:.2f} steps/s = {v['gflops_per_s']:.1f} GFLOP/s"
            for name, v in reference["variants"].items()
        ),
        flush=True,
    )
    return matmul, reference


def run(args) -> dict:
    sizes = dict(QUICK if args.quick else FULL)
    if args.iw_images is not None:
        sizes["iw_images"] = None if args.iw_images == "all" else args.iw_images
    sizes["iw_k"] = args.iw_k or sizes["iw_k"]
    out = args.output_dir or ROOT / "results" / (
        "bench-quick" if args.quick else "bench"
    )
    check_output_dir(out)
    started = time.perf_counter()

    (x_train, _), (x_test, _) = vh.load_mnist(args.data)
    x_train, x_test = x_train[: sizes["train_images"]], x_test[: sizes["elbo_images"]]
    classifier, accuracy = vh.load_or_train_classifier(args.data)

    matmul, reference = yardsticks(x_train, sizes)
    report = {
        "benchmark": "training",
        "quick": args.quick,
        "complete": False,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": vh.versions(),
        "data": str(args.data or os.environ.get(vh.MNIST_PATH_ENV) or "keras"),
        "train_images": len(x_train),
        "sizes": sizes,
        "seed": SEED,
        "classifier_test_accuracy": accuracy,
        "timer_overhead_seconds_per_step": timer_overhead_seconds(),
        "matmul": matmul,
        "reference": reference,
        "configs": {},
    }
    for key in args.configs:
        report["configs"][key] = configuration_result(
            key, sizes, (x_train, x_test), classifier, (matmul, reference), out
        )
        write_report(report, out)  # partial results survive an interrupted run
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["total_seconds"] = time.perf_counter() - started
    report["complete"] = True
    write_report(report, out)
    print("\n" + markdown_report(report))
    print(f"wrote training.json, training.md and grid-*.png to {out}")
    return report


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends with one line naming it, not the usage."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number: {text}")
    return value


def iw_image_count(text: str) -> int | str:
    """N >= 2 (a standard error needs two images) or 'all'."""
    if text == "all":
        return text
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("needs at least 2 images (or 'all')")
    return value


def config_list(text: str) -> list[str]:
    """'a,b,c' -> the chosen configurations, in the order a, b, c."""
    keys = {k.strip() for k in text.split(",") if k.strip()}
    unknown = sorted(keys - set(CONFIGS))
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown configuration(s) {','.join(unknown) or repr(text)}; "
            "choose from a,b,c"
        )
    return [k for k in CONFIGS if k in keys]


def parse_args(argv=None):
    parser = OneLineParser(
        prog=PROG,
        description="Time and score three VAE training configurations.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 epoch on 1,024 training images, small scores and probes",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="default results/bench (results/bench-quick with --quick)",
    )
    parser.add_argument(
        "--configs",
        type=config_list,
        default=list(CONFIGS),
        help="which to run: a (seed), b (keras.io), c (default); default a,b,c",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help=f"local MNIST .npz (else ${vh.MNIST_PATH_ENV}, else Keras downloads it)",
    )
    parser.add_argument(
        "--iw-images",
        type=iw_image_count,
        help="first N test images for the IW log-likelihood, or 'all' "
        f"(default {FULL['iw_images']}; {QUICK['iw_images']} with --quick)",
    )
    parser.add_argument(
        "--iw-k",
        type=positive_int,
        default=None,
        help=f"importance samples per image (default {FULL['iw_k']}; "
        f"{QUICK['iw_k']} with --quick)",
    )
    return parser.parse_args(argv)


def check_output_dir(path: Path) -> None:
    """Fails early, before any timing, if results could not be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise OSError(f"cannot write to output dir {path}: {error.strerror}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # predict()'s retracing notes, per shape
    try:
        run(args)
    except (vh.DataError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; finished configurations are saved", file=sys.stderr
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

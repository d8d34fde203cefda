"""Training benchmark: four VAE configurations, timed and scored in one run.

    python benchmarks/bench_training.py            # full run (about an hour on 2 cores)
    python benchmarks/bench_training.py --quick    # smoke run, a minute or two
    python benchmarks/bench_training.py --table    # rewrite training.md from the JSON

Configurations (`BENCHES`), all trained on the same 60,000 training images, each a
`vh.RunConfig` plus what a RunConfig does not say (model, optimizer, input):

  a  the seed: the book's model, batch 16, RMSprop (lr 1e-3, constant), the seed's
     β = vh.seed_kl_weight(2) ≈ 0.392, no warm-ups, 10 epochs, fit() on arrays.
  b  the keras.io example: its smaller encoder and decoder with the book's sampling
     and loss layers, β = 1, batch 128, Adam (1e-3, constant), 30 epochs, fit() on
     arrays, jit_compile="auto" (off on a CPU-only machine); training images only.
  c  `python vae.py`'s default (vh.DEFAULTS through vh.compile_for_run and
     vh.train_vae: tf.data input, warm-ups, cosine schedule).
  d  the default in mixed bfloat16 (precision="bfloat16"), scored in float32.

No configuration runs a validation pass: seconds per epoch are training only, and
the test set is scored afterwards, the same way for all. Yardsticks, once per run:
a large matmul in float32 and in bfloat16, and the book's own training step
without fit() around it (`train_on_batch` on fixed batches), with and without
XLA. Writes training.json and training.md (and grid-<key>.png) into
results/bench/ (results/bench-quick/ with --quick). Definitions: benchmarks/README.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # vae.py's parser pieces, shared with the CLI

from study import machine_info  # noqa: E402

import vae_helpers as vh  # noqa: E402
from vae import (  # noqa: E402
    OneLineParser,
    check_output_dir,
    choice_list,
    positive_int,
)

keras, tf, layers = vh.keras, vh.tf, vh.layers
PROG = "bench_training.py"
TRAIN_FLOPS_PER_MAC = 2 * 3  # 2 FLOPs per multiply-add; backward ≈ 2x forward


@dataclasses.dataclass(frozen=True)
class Bench:
    """One configuration: a RunConfig and what the RunConfig does not cover."""

    name: str
    config: vh.RunConfig
    model: str = "book"  # or "keras.io"
    # "schedule": vh.compile_for_run's Adam (warm-up, cosine); else a constant
    # config.learning_rate with keras.optimizers.RMSprop or Adam.
    optimizer: str = "schedule"
    # "tf.data": vh.train_vae (vh.image_batches); "arrays": fit(x, shuffle=True).
    input: str = "tf.data"
    jit_compile: bool | str | None = None  # None: config.xla


NO_WARMUPS = {"kl_warmup_epochs": 0.0, "lr_warmup_epochs": 0.0, "learning_rate": 1e-3}
BENCHES = {
    "a": Bench(
        "seed",
        dataclasses.replace(
            vh.DEFAULTS,
            epochs=10,  # the seed's length, whatever the default's is
            batch_size=16,
            kl_weight=vh.seed_kl_weight(2),
            **NO_WARMUPS,
        ),
        optimizer="rmsprop",
        input="arrays",
    ),
    "b": Bench(
        "keras.io",
        dataclasses.replace(vh.DEFAULTS, epochs=30, batch_size=128, **NO_WARMUPS),
        model="keras.io",
        optimizer="adam",
        input="arrays",
        jit_compile="auto",
    ),
    "c": Bench("default", vh.DEFAULTS),
    "d": Bench("default bf16", dataclasses.replace(vh.DEFAULTS, precision="bfloat16")),
}

# The full run, and the --quick smoke run (small data, one epoch, tiny yardsticks).
FULL = {"train_images": None, "test_images": None, "epochs": None, "iw_k": None}
FULL |= {"iw_images": vh.DEFAULTS.iw_images, "matmul_n": 4096, "matmul_repeats": 5}
FULL |= {"ref_warmup_steps": 10, "ref_steps": 20, "ref_repeats": 3}
QUICK = {"train_images": 512, "test_images": 256, "epochs": 1, "iw_k": 50}
QUICK |= {"iw_images": 16, "matmul_n": 256, "matmul_repeats": 2}
QUICK |= {"ref_warmup_steps": 2, "ref_steps": 3, "ref_repeats": 2}


# ----------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------


def _spatial(shape, data_format):
    dims = shape[1:3] if data_format == "channels_last" else shape[2:4]
    return math.prod(int(d) for d in dims)


def layer_macs(layer) -> int:
    """Forward multiply-adds per image of one layer (biases, activations: 0).

    Conv2D: output positions x kernel size. Conv2DTranspose: input positions x
    kernel size. Dense: kernel size x positions before the last axis. Any other
    layer with weights is an error, so nothing is left out silently.
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
    """Forward multiply-adds per image of every counted layer, nested models too."""
    counts = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for name, macs in model_macs(layer).items():
                counts[f"{layer.name}/{name}"] = macs
        elif macs := layer_macs(layer):
            counts[layer.name] = macs
    return counts


# ----------------------------------------------------------------------------
# Models and training
# ----------------------------------------------------------------------------


def build_keras_io_vae(seed: int = vh.DEFAULTS.seed, latent_dim: int = 2):
    """The keras.io example's encoder and decoder, wired like vh.build_vae.

    Its last layer is split as the book's is (logits, then a sigmoid), so the
    book's loss layer and scoring read its logits. Returns (vae, encoder, decoder).
    """
    image = keras.Input(shape=vh.IMAGE_SHAPE, name="image")
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(image)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Dense(16, activation="relu")(layers.Flatten()(x))
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    encoder = keras.Model(image, [z_mean, z_log_var], name="encoder")

    z_in = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Reshape((7, 7, 64))(layers.Dense(7 * 7 * 64, activation="relu")(z_in))
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    logits = layers.Conv2DTranspose(1, 3, padding="same", name="logits")(x)
    pixels = layers.Activation("sigmoid", name="pixel_means")(logits)
    decoder = keras.Model(z_in, pixels, name="decoder")

    inputs = keras.Input(shape=vh.IMAGE_SHAPE, name="image")
    mean, log_var = encoder(inputs)
    z = vh.Sampling(seed=seed, name="sampling")([mean, log_var])
    outputs = vh.CustomVariationalLayer(1.0, name="vae_loss")(
        [inputs, vh.decoder_logits(decoder)(z), mean, log_var]
    )
    return keras.Model(inputs, outputs, name="vae_keras_io"), encoder, decoder


def build_model(bench: Bench):
    c = bench.config
    with vh.dtype_policy(c.precision):
        if bench.model == "keras.io":
            return build_keras_io_vae(c.seed, c.latent_dim)
        return vh.build_vae(c.latent_dim, c.kl_weight, c.seed)


class StepTimer(keras.callbacks.Callback):
    """Seconds of each training step, on_train_batch_begin -> _end: one
    perf_counter() call per hook, about a microsecond."""

    def __init__(self):
        super().__init__()
        self.seconds, self._start = [], 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def train(bench: Bench, vae, x_train, epochs: int, steps: StepTimer) -> dict:
    """Compiles and fits one configuration; returns the history dict."""
    c = bench.config
    if bench.input == "tf.data":  # exactly what python vae.py calls
        vh.compile_for_run(
            vae,
            len(x_train),
            epochs,
            c.batch_size,
            c.learning_rate,
            c.lr_warmup_epochs,
            c.xla,
        )
        return vh.train_vae(
            vae,
            x_train,
            None,
            epochs=epochs,
            batch_size=c.batch_size,
            kl_warmup_epochs=c.kl_warmup_epochs,
            verbose=2,
            callbacks=[steps],
            seed=c.seed,
        )
    optimizers = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    jit = c.xla if bench.jit_compile is None else bench.jit_compile
    optimizer = optimizers[bench.optimizer](c.learning_rate)
    vae.compile(optimizer=optimizer, loss=None, jit_compile=jit)
    history = vae.fit(
        x_train,
        None,
        batch_size=c.batch_size,
        epochs=epochs,
        shuffle=True,
        callbacks=[vh.EpochTimer(), steps],
        verbose=2,
    )
    return history.history


def score(encoder, decoder, x_test, config: vh.RunConfig, data):
    """train_and_save's scores (β = 1): the module's own `vh.score_run`."""
    scores, grid, seconds = vh.score_run(encoder, decoder, x_test, config, data)
    return scores | {
        "test_images": len(x_test),
        "score_seconds": sum(seconds.values()),
        "iw_seconds": seconds.get("iw", 0.0),
    }, grid


def timing(
    history: dict,
    steps: list[float],
    wall: float,
    flops_per_image: int,
    images: int,
    batch_size: int,
) -> dict:
    """Seconds per epoch, the time outside steps and throughput, from raw times."""
    steps = np.asarray(steps)
    median_epoch = float(np.median(history["seconds"]))
    median_step = float(np.median(steps[1:] if len(steps) > 1 else steps))
    flops_per_epoch = flops_per_image * images
    return {
        "wall_seconds": wall,
        "seconds_per_epoch": history["seconds"],
        "median_seconds_per_epoch": median_epoch,
        "steps": len(steps),
        "step_seconds_total": float(steps.sum()),
        "first_step_seconds": float(steps[0]),  # includes tracing
        "median_step_seconds": median_step,
        "outside_steps_seconds": wall - float(steps.sum()),
        "outside_steps_share": (wall - float(steps.sum())) / wall,
        "train_flops_per_epoch": flops_per_epoch,
        "gflops_per_s": flops_per_epoch / median_epoch / 1e9,
        "gflops_per_s_wall": flops_per_epoch * len(history["seconds"]) / wall / 1e9,
        "gflops_per_s_steady_step": flops_per_image * batch_size / median_step / 1e9,
    }


def configuration_result(key, sizes, x_train, x_test, data, yardsticks, out):
    """Trains, times and scores one configuration; returns its JSON record."""
    bench = BENCHES[key]
    config = dataclasses.replace(
        bench.config,
        iw_k=sizes["iw_k"] or bench.config.iw_k,
        iw_images=sizes["iw_images"],
    )
    epochs = sizes["epochs"] or config.epochs
    print(f"\n== ({key}) {bench.name}: {bench.model} model, {bench.input}", flush=True)
    keras.utils.set_random_seed(config.seed)
    vae, encoder, decoder = build_model(bench)
    steps, timer = StepTimer(), vh.Stopwatch()
    with timer("fit"):
        history = train(bench, vae, x_train, epochs, steps)
    xla = bool(vae.jit_compile)
    if config.precision != "float32":  # evaluation in float32, as train_and_save
        vae, encoder, decoder = vh.as_float32(vae, config)
    per_layer = model_macs(vae)
    flops = TRAIN_FLOPS_PER_MAC * sum(per_layer.values())
    times = timing(
        history,
        steps.seconds,
        timer.seconds["fit"],
        flops,
        len(x_train),
        config.batch_size,
    )
    scores, grid = score(encoder, decoder, x_test, config, data)
    vh.save_grid_png(grid, out / f"grid-{key}.png")
    shares = {
        f"share_of_{name}": times["gflops_per_s"] / rate
        for name, rate in yardsticks.items()
    }
    return {
        "key": key,
        "name": bench.name,
        "model": bench.model,
        "optimizer": bench.optimizer,
        "input": bench.input,
        "config": config.to_dict(),
        "epochs": epochs,
        "batch_size": config.batch_size,
        "kl_weight": config.kl_weight,
        "kl_warmup_epochs": config.kl_warmup_epochs,
        "precision": config.precision,
        "xla": xla,
        "train_images": len(x_train),
        "forward_macs_per_image": sum(per_layer.values()),
        "forward_macs_per_layer": per_layer,
        "train_flops_per_image": flops,
        **times,
        **shares,
        **scores,
        "iw_share_of_training": scores["iw_seconds"] / times["wall_seconds"],
    }


# ----------------------------------------------------------------------------
# Yardsticks: a large matmul, and the book's step without fit() around it
# ----------------------------------------------------------------------------


def matmul_rate(n: int, repeats: int, dtype: str = "float32") -> dict:
    """Best-of-`repeats` (n x n) @ (n x n) in TensorFlow, in GFLOP/s."""
    a, b = (
        tf.cast(tf.random.stateless_uniform((n, n), seed=(0, i)), dtype) for i in (1, 2)
    )
    float(tf.matmul(a, b)[0, 0])  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        float(tf.matmul(a, b)[0, 0])  # reading a value waits for the result
        best = min(best, time.perf_counter() - start)
    return {
        "n": n,
        "dtype": dtype,
        "repeats": repeats,
        "best_seconds": best,
        "gflops_per_s": 2 * n**3 / best / 1e9,
    }


def reference_step_rate(x_train, warmup: int, steps: int, repeats: int) -> dict:
    """The default model's compiled training step, called without fit().

    vh.build_vae + vh.compile_vae (Adam), `train_on_batch` on fixed batches at
    the default's batch size: no input pipeline, callbacks or epoch ends. With
    XLA and without, interleaved (a change in load hits both); each keeps its
    best round and the faster is the reference.
    """
    batch_size = vh.DEFAULTS.batch_size
    count = max(1, min(8, len(x_train) // batch_size))
    batches = [
        tf.constant(x_train[i * batch_size : (i + 1) * batch_size])
        for i in range(count)
    ]
    models, variants, calls = {}, {}, [0]
    for name, jit in {"xla": True, "no_xla": False}.items():
        keras.utils.set_random_seed(0)
        models[name] = vh.compile_vae(vh.build_vae()[0], 1e-3, jit_compile=jit)
        variants[name] = {"jit_compile": jit, "best_step_seconds": math.inf}

    def run(name, n):
        logs = {}
        for _ in range(n):
            batch = batches[calls[0] % count]
            logs = models[name].train_on_batch(batch, return_dict=True)
            calls[0] += 1
        return float(logs["loss"]) if logs else None

    for name, v in variants.items():
        start = time.perf_counter()
        v["first_loss"] = run(name, 1)
        v["first_step_seconds"] = time.perf_counter() - start
        run(name, max(warmup - 1, 0))
    for _ in range(repeats):
        for name, v in variants.items():
            start = time.perf_counter()
            v["last_loss"] = run(name, steps)
            v["best_step_seconds"] = min(
                v["best_step_seconds"], (time.perf_counter() - start) / steps
            )
    macs = sum(model_macs(models["xla"]).values())
    for v in variants.values():
        v["steps_per_s"] = 1.0 / v["best_step_seconds"]
        v["gflops_per_s"] = (
            TRAIN_FLOPS_PER_MAC * macs * batch_size / (v["best_step_seconds"] * 1e9)
        )
    fastest = max(variants, key=lambda k: variants[k]["gflops_per_s"])
    return {
        "batch_size": batch_size,
        "forward_macs_per_image": macs,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "variant": fastest,
        "gflops_per_s": variants[fastest]["gflops_per_s"],
        "variants": variants,
    }


# ----------------------------------------------------------------------------
# The table, from the JSON
# ----------------------------------------------------------------------------

COLUMNS = (
    "config",
    "epochs",
    "batch",
    "precision",
    "s/epoch",
    "wall (s)",
    "outside steps",
    "GFLOP/s",
    "% of fp32 matmul",
    "% of bf16 matmul",
    "% of ref. step",
    "test −ELBO (β=1)",
    "IW bound ± SE",
    "IW bound's time / wall",
    "grid digits found",
    "confident share",
)


def percent(result: dict, key: str) -> str:
    return f"{result[key]:.1%}" if key in result else "—"


def table_row(result: dict) -> list[str]:
    """One configuration's cells (older JSON: fp32 only, test_iw_log_likelihood)."""
    digits = result["grid_digits_found"]
    iw = result.get("test_iw_bound", result.get("test_iw_log_likelihood"))
    return [
        f"({result['key']}) {result['name']}",
        str(result["epochs"]),
        str(result["batch_size"]),
        result.get("precision", "float32"),
        f"{result['median_seconds_per_epoch']:.1f}",
        f"{result['wall_seconds']:.0f}",
        f"{result['outside_steps_share']:.1%}",
        f"{result['gflops_per_s']:.1f}",
        percent(result, "share_of_matmul"),
        percent(result, "share_of_bf16_matmul"),
        percent(result, "share_of_reference_step"),
        f"{result['test_neg_elbo']:.2f}",
        f"{iw:.2f} ± {result['test_iw_standard_error']:.2f}",
        percent(result, "iw_share_of_training"),
        f"{len(digits)}/10 ({' '.join(map(str, digits))})",
        f"{result['grid_confident_share']:.0%}",
    ]


def markdown_report(report: dict) -> str:
    """The results table and the yardsticks it is measured against."""
    machine, ref = report["machine"], report["reference"]
    load = machine.get("load_average", machine.get("load_average_at_start"))
    matmuls = [report["matmul"], *filter(None, [report.get("matmul_bf16")])]
    lines = [
        "# Training benchmark" + (" (quick smoke run)" if report["quick"] else ""),
        "",
        f"{report['date']} · {machine['cpu_model']}, {machine['usable_cores']} "
        f"cores, native bf16: {'yes' if machine.get('bf16') else 'no'} · "
        f"TensorFlow {report['versions']['tensorflow']}, Keras "
        f"{report['versions']['keras']} · {report['train_images']} training images",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
        *("| " + " | ".join(table_row(r)) + " |" for r in report["configs"].values()),
        "",
        "s/epoch: median over epochs. GFLOP/s: training FLOPs per epoch (6 x "
        "forward multiply-adds per image x images) / s/epoch. Outside steps: "
        "fit() wall time minus the summed per-batch step times. IW bound's "
        "time / wall: seconds of the importance-weighted bound over fit()'s wall.",
        "Matmul, best of "
        + "; ".join(
            f"{m['repeats']}, {m.get('dtype', 'float32')} {m['n']}x{m['n']} @ "
            f"{m['n']}x{m['n']}: {m['gflops_per_s']:.1f} GFLOP/s"
            for m in matmuls
        )
        + f". Reference step (batch {ref['batch_size']}, best of "
        f"{ref['repeats']} x {ref['timed_steps']} steps): "
        + "; ".join(
            f"{'with' if v['jit_compile'] else 'without'} XLA "
            f"{v['gflops_per_s']:.1f} GFLOP/s"
            for v in ref["variants"].values()
        )
        + f"; the faster ({ref['variant']}) is the reference.",
        "",
        f"Load average {load[0]:.1f} at the start "
        f"({machine['usable_cores']} cores usable).",
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


def run(args) -> dict:
    sizes = dict(QUICK if args.quick else FULL)
    if args.iw_images is not None:
        sizes["iw_images"] = None if args.iw_images == "all" else args.iw_images
    sizes["iw_k"] = args.iw_k or sizes["iw_k"]
    out = args.output_dir
    check_output_dir(out)
    configs, skipped = (args.configs, {}) if args.configs else default_configs()
    for key, why in skipped.items():
        print(f"({key}) {BENCHES[key].name} skipped: {why}", flush=True)
    timer = vh.Stopwatch()

    with timer("total"):
        (x_train, _), (x_test, _) = vh.load_mnist(args.data)
        x_train, x_test = (
            x_train[: sizes["train_images"]],
            x_test[: sizes["test_images"]],
        )
        _, accuracy = vh.load_or_train_classifier(args.data)  # trained once, cached
        print("timing matmuls and the reference step ...", flush=True)
        matmul = matmul_rate(sizes["matmul_n"], sizes["matmul_repeats"])
        matmul_bf16 = matmul_rate(
            sizes["matmul_n"], sizes["matmul_repeats"], "bfloat16"
        )
        reference = reference_step_rate(
            x_train, sizes["ref_warmup_steps"], sizes["ref_steps"], sizes["ref_repeats"]
        )
        yardsticks = {
            "matmul": matmul["gflops_per_s"],
            "bf16_matmul": matmul_bf16["gflops_per_s"],
            "reference_step": reference["gflops_per_s"],
            "reference_xla_step": reference["variants"]["xla"]["gflops_per_s"],
        }
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
            "classifier_test_accuracy": accuracy,
            "matmul": matmul,
            "matmul_bf16": matmul_bf16,
            "reference": reference,
            "skipped": skipped,
            "configs": {},
        }
        for key in configs:
            report["configs"][key] = configuration_result(
                key, sizes, x_train, x_test, args.data, yardsticks, out
            )
            write_report(report, out)  # an interrupted run keeps what it finished
    report["load_average_at_end"] = list(os.getloadavg())
    report["total_seconds"] = timer.seconds["total"]
    report["complete"] = True
    write_report(report, out)
    print("\n" + markdown_report(report))
    print(f"wrote training.json, training.md and grid-*.png to {out}")
    return report


def default_configs() -> tuple[list[str], dict]:
    """All four where bfloat16 is native; else (d) is left out, and why.

    Emulated bfloat16 (AVX2 only) took about 5x (c)'s time a step in a --quick
    run here: most of an hour for the full (d), and no speed to learn from.
    """
    precision, why = vh.resolve_precision("auto")
    if precision == "bfloat16":
        return list(BENCHES), {}
    skipped = [k for k, b in BENCHES.items() if b.config.precision == "bfloat16"]
    keys = [k for k in BENCHES if k not in skipped]
    return keys, {
        k: f"{why.removeprefix('auto: ')}; --configs a,b,c,d runs it" for k in skipped
    }


def iw_image_count(text: str) -> int | str:
    return "all" if text == "all" else positive_int(text)


def parse_args(argv=None):
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="1 epoch on 512 images, tiny probes")
    add("--table", action="store_true", help="only rewrite training.md from the JSON")
    add("--output-dir", type=Path, help="default results/bench (-quick with --quick)")
    add(
        "--configs",
        type=choice_list(BENCHES, "configuration(s)"),
        help="e.g. a,c,d; default a,b,c, and d where the CPU has native bfloat16",
    )
    add("--data", metavar="PATH", help="local MNIST .npz (else $VAE_MNIST_PATH)")
    add("--iw-images", type=iw_image_count, help="first N test images, or 'all'")
    add("--iw-k", type=positive_int, help="importance samples per image")
    args = parser.parse_args(argv)
    iw = {"iw_k": args.iw_k or 1}
    if args.iw_images is not None:
        iw["iw_images"] = None if args.iw_images == "all" else args.iw_images
    for problem in dataclasses.replace(vh.DEFAULTS, **iw).problems():
        parser.error(problem)
    args.output_dir = args.output_dir or ROOT / "results" / (
        "bench-quick" if args.quick else "bench"
    )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # predict()'s retracing notes, per shape
    try:
        if args.table:
            report = json.loads((args.output_dir / "training.json").read_text())
            with vh.atomic_path(args.output_dir / "training.md") as tmp:
                Path(tmp).write_text(markdown_report(report))
            print(markdown_report(report))
        else:
            run(args)
    except (vh.DataError, vh.ConfigError, OSError, json.JSONDecodeError) as error:
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

"""What the importance-weighted bound costs beside training, and where it goes.

    python benchmarks/iw_share.py            # about a minute on 2 cores
    python benchmarks/iw_share.py --quick    # smoke run for the tests

The speed issue asks the bound (k = 1000 on the documented subset) to take at
most 10% of the default run's training time. A full run answers that once
(`metrics.json`: iw_seconds, train_seconds); this answers it in minutes, and
says why. In one process, taking turns for --rounds rounds, it times --steps
training steps of the default (`vh.compile_for_run`, batch 32) and the bound on
--images test images, and scales both to a whole run (the default's epochs of 60,000
images; the subset of `vh.DEFAULTS.iw_images`). Then it times each decoder
layer on a chunk of 1,000 decodes with its GFLOP/s, beside a float32 matmul
yardstick: the bound is 10^6 decodes, and the layers' rates say what it can
reach. Writes iw-share.json and iw-share.md into --output-dir (default
results/bench/).
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROG = "iw_share.py"
TRAIN_IMAGES = 60_000


def measure(vh, x_train, x_test, steps: int, images: int, rounds: int, chunk: int):
    import numpy as np
    from bench_training import layer_macs, matmul_rate
    from jax_cpu import median_ms

    keras = vh.keras
    config = vh.DEFAULTS
    vae, encoder, decoder = vh.build_vae(config.latent_dim, seed=config.seed)
    vh.compile_for_run(vae, TRAIN_IMAGES)
    batches = x_train[: steps * config.batch_size]

    def train():
        vh.train_vae(vae, batches, epochs=1, kl_warmup_epochs=0, verbose=0)

    def bound():
        vh.importance_weighted_log_likelihood(
            encoder, decoder, x_test[:images], k=config.iw_k
        )

    train(), bound()  # traced once, before any timing
    step_s, image_s = [], []
    for _ in range(rounds):  # turns, so that a noisy host weighs on both alike
        for times, function, count in (
            (step_s, train, steps),
            (image_s, bound, images),
        ):
            start = time.perf_counter()
            function()
            times.append((time.perf_counter() - start) / count)
    run_steps = config.epochs * math.ceil(TRAIN_IMAGES / config.batch_size)
    train_seconds = statistics.median(step_s) * run_steps
    iw_seconds = statistics.median(image_s) * config.iw_images

    z = np.random.default_rng(0).standard_normal((chunk, config.latent_dim))
    logits = decoder.get_layer("logits")
    timed = [(layer.name, layer, layer) for layer in vh.decoder_logits(decoder).layers]
    timed = [row for row in timed if row[1].weights]  # not Input, Reshape
    timed.append(
        (
            "logits as a depthwise conv and a channel sum",
            logits,
            vh.OneChannelConvAsDepthwise(logits),
        )
    )
    layer_rows = []
    for name, layer, compute in timed:
        inputs = keras.Input(layer.input.shape[1:])
        alone = keras.Model(inputs, compute(inputs))
        # timed with a total per decode out, so no copy of a 100 MB output to
        # NumPy is counted: inside the bound, layers hand their outputs on
        out = alone(inputs)
        totals = keras.Model(inputs, keras.ops.sum(out, axis=range(1, len(out.shape))))
        h = keras.Model(decoder.input, layer.input).predict_on_batch(z)
        ms = median_ms(totals.predict_on_batch, h, repeats=3)
        difference = keras.ops.convert_to_numpy(alone(h) - layer(h))
        flops = 2 * layer_macs(layer)  # per decode
        layer_rows.append(
            {
                "layer": name,
                "ms_per_chunk": ms,
                "mflop_per_decode": flops / 1e6,
                "gflops": flops * chunk / ms / 1e6,
                "max_difference_from_layer": float(np.max(np.abs(difference))),
            }
        )
    matmul_gflops = matmul_rate(2048, 3)["gflops_per_s"]
    return {
        "train_ms_per_step": statistics.median(step_s) * 1e3,
        "train_seconds_per_run": train_seconds,
        "iw_ms_per_image": statistics.median(image_s) * 1e3,
        "iw_seconds_per_run": iw_seconds,
        "iw_share": iw_seconds / train_seconds,
        "run_steps": run_steps,
        "iw_images": config.iw_images,
        "iw_k": config.iw_k,
        "layers": layer_rows,
        "chunk": chunk,
        "matmul_gflops": matmul_gflops,
    }


def markdown(report: dict) -> str:
    r = report
    return "\n".join(
        [
            "# The importance-weighted bound beside training",
            "",
            f"{r['date']} · {r['machine']['cpu_model']},"
            f" {r['machine']['cores_used']} of {r['machine']['cores']} cores"
            f" · {r['versions']}",
            "",
            f"- Training: {r['train_ms_per_step']:.1f} ms per step of 32 images"
            f" ({r['steps']} steps, median of {r['rounds']} rounds), so"
            f" {r['train_seconds_per_run']:.0f} s for the default's"
            f" {r['run_steps']} steps.",
            f"- The bound: {r['iw_ms_per_image']:.0f} ms per image at k ="
            f" {r['iw_k']} ({r['images']} images, median of {r['rounds']} rounds),"
            f" so {r['iw_seconds_per_run']:.0f} s for the first {r['iw_images']}"
            f" test images: **{r['iw_share']:.1%} of training** (target 10%).",
            "",
            f"One chunk of {r['chunk']} decodes, layer by layer (float32 matmul"
            f" yardstick: {r['matmul_gflops']:.0f} GFLOP/s):",
            "",
            "| decoder layer | ms per chunk | MFLOP per decode | GFLOP/s"
            " | max difference from the layer |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {row['layer']} | {row['ms_per_chunk']:.1f}"
                f" | {row['mflop_per_decode']:.2f} | {row['gflops']:.1f}"
                f" | {row['max_difference_from_layer']:.1e} |"
                for row in r["layers"]
            ),
            "",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--steps", type=int, default=300, help="training steps timed")
    parser.add_argument("--images", type=int, default=40, help="test images bounded")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.images, args.rounds = 4, 2, 1
    for name in ("steps", "images", "rounds"):
        if getattr(args, name) < 1:
            print(f"{PROG}: error: --{name} must be at least 1", file=sys.stderr)
            return 2
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))  # bench_training, jax_cpu
    import vae_helpers as vh

    (x_train, _), (x_test, _) = vh.load_mnist()
    chunk = 50 if args.quick else 1000
    report = {
        "benchmark": "the IW bound beside training (iw_share.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": vh.machine(),
        "versions": vh.versions_line(),
        "steps": args.steps,
        "images": args.images,
        "rounds": args.rounds,
        **measure(vh, x_train, x_test, args.steps, args.images, args.rounds, chunk),
    }
    vh.write_report(report, markdown(report), args.output_dir, "iw-share")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

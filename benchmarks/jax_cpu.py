"""Why the default trains slower on JAX than on TensorFlow on a CPU, in one run.

    python benchmarks/jax_cpu.py            # about 6 minutes on 2 cores
    python benchmarks/jax_cpu.py --quick    # a smoke run (CI)

Two measurements, each JAX against TensorFlow on the same machine and load:
1. Each convolution of the book's model alone, at batch 32: forward, forward +
   gradients (what a training step runs) and the kernel's gradient alone,
   jit-compiled in JAX (XLA:CPU) and as a `tf.function` in TensorFlow (oneDNN).
2. The whole training step (bench_backends.py's child: the default model and
   schedule) at batch 32 and 128, and on JAX with XLA:CPU flags that route
   convolutions elsewhere, each in a process of its own.
Writes jax-cpu.json and jax-cpu.md into results/bench/ (results/bench-quick/).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROG = "jax_cpu.py"
# (name, input height = width, input channels, output channels, stride, transposed:
# False, True, or "phases": JAX as vh.Conv2DTranspose computes it, TF's op beside)
CONVOLUTIONS = [
    ("encoder conv 1 (28×28, 1→32)", 28, 1, 32, 1, False),
    ("encoder conv 2 (28→14, 32→64, stride 2)", 28, 32, 64, 2, False),
    ("encoder conv 3 and 4 (14×14, 64→64)", 14, 64, 64, 1, False),
    ("decoder transposed conv (14→28, 64→32)", 14, 64, 32, 2, True),
    ("the same as four phases (vh.Conv2DTranspose on JAX)", 14, 64, 32, 2, "phases"),
    ("decoder logits conv (28×28, 32→1)", 28, 32, 1, 1, False),
]
XLA_FLAG_VARIANTS = [
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_onednn=true",
]


def median_ms(function, *arguments, repeats):
    function(*arguments)  # compile / trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*arguments)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def phase_transposed_conv(x, w_t):
    """vh.Conv2DTranspose.call_as_phases in jax.numpy (its Keras ops run on TF here)."""
    import jax
    import jax.numpy as jnp

    from vae_helpers import PHASE_TAPS

    _, height, width, _ = x.shape
    kernel = jnp.pad(w_t.transpose(0, 1, 3, 2), [(0, 1), (0, 1), (0, 0), (0, 0)])
    kernel = kernel[PHASE_TAPS][:, :, PHASE_TAPS].transpose(0, 2, 4, 1, 3, 5)
    filters = kernel.shape[-1]
    kernel = kernel.reshape(2, 2, x.shape[3], 4 * filters)
    padded = jnp.pad(x, [(0, 0), (1, 0), (1, 0), (0, 0)])
    phases = jax.lax.conv_general_dilated(
        padded, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    phases = phases.reshape(-1, height, width, 2, 2, filters)
    return phases.transpose(0, 1, 3, 2, 4, 5).reshape(
        -1, 2 * height, 2 * width, filters
    )


def convolution_times(batch: int, repeats: int) -> list[dict]:
    """Per convolution: ms forward and forward + gradients, JAX and TensorFlow."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rows = []
    for name, size, c_in, c_out, stride, transposed in CONVOLUTIONS:
        x = rng.standard_normal((batch, size, size, c_in)).astype("float32")
        w = (0.1 * rng.standard_normal((3, 3, c_in, c_out))).astype("float32")
        if transposed:  # the gradient of a strided conv with respect to its input
            out_shape = (batch, 2 * size, 2 * size, c_out)
            w_t = np.ascontiguousarray(w.transpose(0, 1, 3, 2))  # HW(out)(in)

            def jax_loss(x, w, phases=transposed == "phases"):
                if phases:
                    return jnp.sum(
                        phase_transposed_conv(x, w.transpose(0, 1, 3, 2)) ** 2
                    )
                y = jax.lax.conv_transpose(
                    x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
                return jnp.sum(y * y)

            def tf_loss(x, w, out_shape=out_shape):
                y = tf.nn.conv2d_transpose(x, w, out_shape, 2, "SAME")
                return tf.reduce_sum(y * y)

            w_tf = w_t
        else:

            def jax_loss(x, w, stride=stride):
                y = jax.lax.conv_general_dilated(
                    x,
                    w,
                    (stride, stride),
                    "SAME",
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
                return jnp.sum(y * y)

            def tf_loss(x, w, stride=stride):
                return tf.reduce_sum(tf.square(tf.nn.conv2d(x, w, stride, "SAME")))

            w_tf = w
        jax_forward = jax.jit(jax_loss)
        jax_gradients = jax.jit(jax.grad(jax_loss, argnums=(0, 1)))
        jax_kernel_gradient = jax.jit(jax.grad(jax_loss, argnums=1))
        tf_forward = tf.function(tf_loss)

        @tf.function
        def tf_gradients(x, w, tf_loss=tf_loss):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                loss = tf_loss(x, w)
            return tape.gradient(loss, [x, w])

        @tf.function
        def tf_kernel_gradient(x, w, tf_loss=tf_loss):
            with tf.GradientTape() as tape:
                tape.watch(w)
                loss = tf_loss(x, w)
            return tape.gradient(loss, w)

        def run_jax(f):
            return lambda *a: jax.block_until_ready(f(*a))

        def run_tf(f):
            return lambda *a: [t.numpy() for t in tf.nest.flatten(f(*a))]

        xt, wt = tf.constant(x), tf.constant(w_tf)
        measured = {
            "forward": (jax_forward, tf_forward),
            "gradients": (jax_gradients, tf_gradients),
            "kernel_gradient": (jax_kernel_gradient, tf_kernel_gradient),
        }
        times = {}
        for _ in range(2):  # alternate, so both see the same load
            for what, (on_jax, on_tf) in measured.items():
                for key, f, args in [
                    (f"jax_{what}_ms", run_jax(on_jax), (x, w)),
                    (f"tf_{what}_ms", run_tf(on_tf), (xt, wt)),
                ]:
                    times.setdefault(key, []).append(
                        median_ms(f, *args, repeats=repeats)
                    )
        row = {"convolution": name} | {key: min(t) for key, t in times.items()}
        for what in measured:
            row[f"{what}_jax_vs_tf"] = row[f"jax_{what}_ms"] / row[f"tf_{what}_ms"]
        rows.append(row)
    return rows


def step_times(images: int, batches: list[int], flags: list[str]) -> list[dict]:
    """The whole step, one process per setting (bench_backends.py's child)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_backends import run_child

    settings = [(b, backend, "") for b in batches for backend in ("tensorflow", "jax")]
    settings += [(batches[0], "jax", flag) for flag in flags]
    rows = []
    for batch, backend, flag in settings:
        run = run_child(backend, images, batch, {"XLA_FLAGS": flag} if flag else None)
        rows.append(
            {
                "backend": backend,
                "batch_size": batch,
                "xla_flags": flag,
                "ms_per_step": 1000 * run["seconds_per_step"],
                "ms_per_image": 1000 * run["seconds_per_step"] / batch,
            }
        )
    for row in rows:
        tf_row = next(
            r
            for r in rows
            if r["backend"] == "tensorflow" and r["batch_size"] == row["batch_size"]
        )
        row["vs_tensorflow"] = row["ms_per_step"] / tf_row["ms_per_step"]
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# Why JAX trains slower than TensorFlow here",
        "",
        f"{report['date']} · {report['machine']} · {report['versions']}",
        "",
        f"## Each convolution alone (batch {report['batch']}, ms, best of 2 medians)",
        "",
        "| convolution | forward JAX | forward TF | JAX/TF "
        "| forward + gradients JAX | TF | JAX/TF | kernel gradient JAX | TF | JAX/TF |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["convolutions"]:
        lines.append(
            f"| {r['convolution']} | {r['jax_forward_ms']:.2f}"
            f" | {r['tf_forward_ms']:.2f}"
            f" | {r['forward_jax_vs_tf']:.2f}× | {r['jax_gradients_ms']:.2f}"
            f" | {r['tf_gradients_ms']:.2f} | {r['gradients_jax_vs_tf']:.2f}×"
            f" | {r['jax_kernel_gradient_ms']:.2f} | {r['tf_kernel_gradient_ms']:.2f}"
            f" | {r['kernel_gradient_jax_vs_tf']:.2f}× |"
        )
    lines += [
        "",
        "## The whole training step (the default model, one process each)",
        "",
        "| backend | batch | XLA_FLAGS | ms/step | ms/image | vs TensorFlow |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["steps"]:
        lines.append(
            f"| {r['backend']} | {r['batch_size']} | {r['xla_flags'] or '(none)'}"
            f" | {r['ms_per_step']:.1f} | {r['ms_per_image']:.2f}"
            f" | {r['vs_tensorflow']:.2f}× |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--output-dir", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    import vae_helpers as vh

    batch, repeats = (8, 3) if args.quick else (32, 20)
    images, batches = (256, [32]) if args.quick else (3200, [32, 128])
    flags = XLA_FLAG_VARIANTS[:1] if args.quick else XLA_FLAG_VARIANTS
    try:
        convolutions = convolution_times(batch, repeats)
        steps = step_times(images, batches, flags)
    except RuntimeError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    import jax

    report = {
        "benchmark": "JAX against TensorFlow on this CPU (benchmarks/jax_cpu.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{vh.cpu_model()}, {os.cpu_count()} cores",
        "versions": f"{vh.versions_line()}, JAX {jax.__version__}",
        "quick": args.quick,
        "batch": batch,
        "convolutions": convolutions,
        "steps": steps,
    }
    out = args.output_dir or ROOT / "results" / (
        "bench-quick" if args.quick else "bench"
    )
    vh.write_report(report, markdown(report), out, "jax-cpu")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The default configuration's training speed on each Keras backend, in one run.

    python benchmarks/bench_backends.py             # 3 backends, 3 rounds each
    python benchmarks/bench_backends.py --quick     # a smoke run (CI)

Keras picks its backend once per process, so each measurement is a process of
its own (`--child BACKEND`): the book's model under `vh.compile_for_run` and
`vh.train_vae` (tf.data input, the default schedule and batch) for two epochs on
the first --images training images. The first epoch holds the tracing or
compiling; the second, steady one gives the seconds per step. The backends take
turns, round after round, so that all see the same load on the machine; each
backend's result is its median over the rounds. Yardstick, in the same run: a
float32 matmul in TensorFlow (as in bench_training.py). Writes backends.json and
backends.md into results/bench/ (results/bench-quick/ with --quick).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
PROG = "bench_backends.py"


def child(backend: str, images: int, batch_size: int | None = None) -> dict:
    """One backend's two epochs; runs in the process Keras started for it."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_training import TRAIN_FLOPS_PER_MAC, matmul_rate, model_macs

    import vae_helpers as vh

    assert vh.keras.backend.backend() == backend, vh.keras.backend.backend()
    (x_train, _), _ = vh.load_mnist()
    x = x_train[:images]
    config = vh.DEFAULTS
    if batch_size:
        config = dataclasses.replace(config, batch_size=batch_size)
    vh.keras.utils.set_random_seed(config.seed)
    vae, _, _ = vh.build_vae(config.latent_dim, config.kl_weight, config.seed)
    vh.compile_for_run(vae, len(x), 2, config.batch_size, config.learning_rate)
    start = time.perf_counter()
    history = vh.train_vae(
        vae, x, epochs=2, batch_size=config.batch_size, verbose=0, seed=config.seed
    )
    steps = -(-len(x) // config.batch_size)
    seconds_per_step = history["seconds"][1] / steps
    macs = sum(model_macs(vae).values())
    flops_per_step = TRAIN_FLOPS_PER_MAC * macs * config.batch_size
    result = {
        "backend": backend,
        "batch_size": config.batch_size,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": vh.versions(),
        "steps_per_epoch": steps,
        "first_epoch_seconds": history["seconds"][0],
        "seconds_per_step": seconds_per_step,
        "gflops_per_s": flops_per_step / seconds_per_step / 1e9,
        "final_loss": history["loss"][-1],
        "wall_seconds": time.perf_counter() - start,
        "jit_compile": bool(vae.jit_compile),
    }
    if backend == "tensorflow":  # the yardstick, measured once per round
        result["matmul"] = matmul_rate(4096 if images > 1024 else 512, 3)
    return result


def run_child(backend: str, images: int, batch_size=None, extra_env=None) -> dict:
    """`child` in a process of its own (Keras reads KERAS_BACKEND once)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "VAE_FAST": "", **(extra_env or {})}
    batch = ["--batch-size", str(batch_size)] if batch_size else []
    done = subprocess.run(
        [sys.executable, __file__, "--child", backend, "--images", str(images), *batch],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"{backend}: exit {done.returncode}: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(rounds: list[list[dict]]) -> dict:
    """Per backend: the median over rounds of each timing, and its share."""
    matmul = statistics.median(
        r["matmul"]["gflops_per_s"]
        for round_ in rounds
        for r in round_
        if "matmul" in r
    )
    rows = {}
    for backend in BACKENDS:
        runs = [r for round_ in rounds for r in round_ if r["backend"] == backend]
        median = {
            key: statistics.median(r[key] for r in runs)
            for key in ("seconds_per_step", "first_epoch_seconds", "gflops_per_s")
        }
        rows[backend] = {
            **median,
            "share_of_matmul": median["gflops_per_s"] / matmul,
            "rounds": len(runs),
            "versions": runs[0]["versions"],
            "jit_compile": runs[0]["jit_compile"],
            "final_losses": [r["final_loss"] for r in runs],
        }
    reference = rows["tensorflow"]["seconds_per_step"]
    for row in rows.values():
        row["time_vs_tensorflow"] = row["seconds_per_step"] / reference
    return {"matmul_gflops_per_s": matmul, "backends": rows}


def markdown(report: dict) -> str:
    lines = [
        "# Training speed per backend",
        "",
        f"{report['date']} · {report['machine']} · the default configuration, "
        f"{report['images']} images, batch 32 · median of {report['rounds']} rounds",
        "",
        "| backend | version | s/step | vs TensorFlow | GFLOP/s | % of fp32 matmul "
        "| first epoch (s) | step compiled |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["backends"].items():
        version = row["versions"].get(name, row["versions"]["tensorflow"])
        lines.append(
            f"| {name} | {version} | {1000 * row['seconds_per_step']:.1f} ms "
            f"| {row['time_vs_tensorflow']:.2f}× | {row['gflops_per_s']:.1f} "
            f"| {100 * row['share_of_matmul']:.1f}% "
            f"| {row['first_epoch_seconds']:.1f} | {row['jit_compile']} |"
        )
    lines += [
        "",
        f"Matmul (TensorFlow, float32): {report['matmul_gflops_per_s']:.1f} GFLOP/s.",
        "s/step: the second epoch's wall time per step (the first holds tracing).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 images, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.images, args.batch_size)))
        return 0
    if args.rounds < 1 or args.images < 64:
        parser.exit(2, f"{PROG}: error: --rounds must be >= 1, --images >= 64\n")
    images, rounds = (512, 1) if args.quick else (args.images, args.rounds)
    out = args.output_dir or ROOT / "results" / (
        "bench-quick" if args.quick else "bench"
    )
    sys.path.insert(0, str(ROOT / "benchmarks"))

    try:
        results = []
        for index in range(rounds):
            results.append([run_child(b, images) for b in BACKENDS])
            print(f"round {index + 1} of {rounds} done", flush=True)
    except RuntimeError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    import vae_helpers as vh  # only now: each child imports its own backend

    report = {
        "benchmark": "training speed per Keras backend (benchmarks/bench_backends.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{vh.cpu_model()}, {vh.cores_used()} of {os.cpu_count()} cores",
        "images": images,
        "rounds": rounds,
        **summarize(results),
        "runs": results,
    }
    vh.write_report(report, markdown(report), out, "backends")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does bfloat16 arithmetic itself cost nats? One trained model, part by part.

    python benchmarks/bf16_forward.py --weights results/vae/vae.weights.h5

Training in bfloat16 scored about a nat worse than float32 over five seeds
(README). This separates the arithmetic from the training: it loads one model's
weights into float32 and `mixed_bfloat16` builds and scores the test −ELBO with
the same noise, with the code z rounded to bfloat16, the encoder in bfloat16,
the decoder in bfloat16, and both. If these agree, the loss is made in training.
Writes forward.json and forward.md into --output-dir (default results/precision/).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROG = "bf16_forward.py"


def measure(vh, weights: Path, x) -> dict:
    import ml_dtypes
    import numpy as np

    parts = {}
    for precision in ("float32", "bfloat16"):
        with vh.dtype_policy(precision):
            vae, encoder, decoder = vh.build_vae()
        vh.load_weights(vae, weights)
        parts[precision] = encoder, decoder
    (e32, d32), (e16, d16) = parts["float32"], parts["bfloat16"]
    rows = {  # the same noise (seed 0) in every row
        "all float32": vh.evaluate_elbo(e32, d32, x),
        "the code z rounded to bfloat16, the rest float32": vh.evaluate_elbo(
            e32, d32, x, round_code_to="bfloat16"
        ),
        "encoder in bfloat16": vh.evaluate_elbo(e16, d32, x),
        "decoder in bfloat16": vh.evaluate_elbo(e32, d16, x),
        "everything but the loss layer in bfloat16": vh.evaluate_elbo(e16, d16, x),
    }
    rows = {name: scores["neg_elbo"] for name, scores in rows.items()}
    z_mean, z_log_var = vh.encode(e32, x)
    median_abs_mean = float(np.median(np.abs(z_mean)))
    return {
        "neg_elbo": rows,
        "median_abs_z_mean": median_abs_mean,
        "median_posterior_std": float(np.median(np.exp(0.5 * z_log_var))),
        "bfloat16_spacing_at_median": float(
            np.spacing(ml_dtypes.bfloat16(median_abs_mean)).astype("float32")
        ),
    }


def markdown(report: dict) -> str:
    base = report["neg_elbo"]["all float32"]
    lines = [
        "# bfloat16 arithmetic on one trained model",
        "",
        f"{report['date']} · {report['weights']} · {report['images']} test images"
        f" · {report['versions']}",
        "",
        "| forward pass | test −ELBO | − all float32 |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {value:.3f} | {value - base:+.3f} |"
            for name, value in report["neg_elbo"].items()
        ),
        "",
        f"Median |z_mean| {report['median_abs_z_mean']:.4f}; bfloat16's spacing"
        f" there {report['bfloat16_spacing_at_median']:.4f}; median posterior"
        f" standard deviation {report['median_posterior_std']:.4f}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=int, default=10_000, help="first N test")
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT / "results" / "precision"
    )
    args = parser.parse_args(argv)
    if not args.weights.is_file():
        print(f"{PROG}: error: {args.weights}: no such weights file", file=sys.stderr)
        return 2
    if args.images < 1:
        print(f"{PROG}: error: --images must be at least 1", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import vae_helpers as vh

    (_, _), (x_test, _) = vh.load_mnist()
    try:
        measured = measure(vh, args.weights, x_test[: args.images])
    except ValueError as error:  # weights of another model
        print(f"{PROG}: error: {args.weights}: {error}", file=sys.stderr)
        return 2
    report = {
        "benchmark": "bfloat16 arithmetic on one trained model (bf16_forward.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weights": str(args.weights),
        "images": min(args.images, len(x_test)),
        "versions": vh.versions_line(),
        **measured,
    }
    vh.write_report(report, markdown(report), args.output_dir, "forward")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""float32 against bfloat16 over several seeds: is the difference more than a draw?

    python benchmarks/compare_precision.py --float32 results/study/default \\
        results/study/seed-7 ... --bfloat16 results/precision/bfloat16-seed-7 ...

One seed's pair says little: bf16 rounding sends a run down another path, as
another seed would (README). So each precision is summarised over its runs
(mean ± sample std of every score, the digits each grid holds), and the two
means are compared with the standard error of their difference (Welch). Reads
each folder's metrics.json (written by `python vae.py`); writes summary.json and
summary.md into --output-dir (default results/precision/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROG = "compare_precision.py"
SCORES = ("test_neg_elbo", "test_reconstruction", "test_kl", "test_iw_bound")


def repository_path(folder: Path) -> str:
    """The folder relative to the repository where it is inside it, so that a
    summary names its runs the same way on every machine (chapter 6 reads them)."""
    try:
        return str(folder.resolve().relative_to(ROOT))
    except ValueError:
        return str(folder)


def read_run(folder: Path) -> dict:
    """The scores of one finished run, and its grid's confident cells per digit."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: no readable metrics.json ({error})") from None
    cells = metrics.get("grid_confident_cells_per_digit")
    if cells is None and (folder / "summary.json").exists():
        # benchmarks/study.py counts the cells after the run, into summary.json
        cells = json.loads((folder / "summary.json").read_text()).get(
            "grid_confident_cells_per_digit"
        )
    if cells is None:
        raise ValueError(f"{folder}: metrics.json has no grid check")
    return {
        "folder": repository_path(folder),
        "seed": metrics["config"]["seed"],
        "precision": metrics.get("precision_used", "float32"),
        "machine": metrics.get("machine", ""),
        **{k: metrics[k] for k in SCORES if k in metrics},
        "cells": cells,  # -> digits_held, by vh.digits_held once it is imported
    }


def spread(values: list[float]) -> dict:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def compare(float32: list[dict], bfloat16: list[dict]) -> dict:
    """Per score: each precision's spread and bf16's mean minus fp32's, with its SE."""
    scores = {}
    for key in SCORES:
        a = [r[key] for r in float32 if key in r]
        b = [r[key] for r in bfloat16 if key in r]
        if len(a) < 2 or len(b) < 2:
            continue
        sa, sb = spread(a), spread(b)
        error = math.sqrt(sa["std"] ** 2 / len(a) + sb["std"] ** 2 / len(b))
        scores[key] = {
            "float32": sa,
            "bfloat16": sb,
            "difference": sb["mean"] - sa["mean"],
            "standard_error": error,
        }
    return {
        "scores": scores,
        "all_ten_digits": {
            "float32": sum(len(r["digits_held"]) == 10 for r in float32),
            "bfloat16": sum(len(r["digits_held"]) == 10 for r in bfloat16),
        },
    }


def markdown(report: dict) -> str:
    lines = [
        "# float32 against bfloat16, over seeds",
        "",
        f"{report['date']} · runs: {len(report['float32'])} float32, "
        f"{len(report['bfloat16'])} bfloat16",
        "",
        "| run | precision | seed | test −ELBO | IW bound | digits held (≥ 3 cells) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in report["float32"] + report["bfloat16"]:
        iw = f"{run['test_iw_bound']:.2f}" if "test_iw_bound" in run else "–"
        held = " ".join(map(str, run["digits_held"]))
        lines.append(
            f"| {run['folder']} | {run['precision']} | {run['seed']} "
            f"| {run['test_neg_elbo']:.2f} | {iw} "
            f"| {len(run['digits_held'])} ({held}) |"
        )
    lines += [
        "",
        "| score | float32 mean ± std | bfloat16 mean ± std | bf16 − fp32 ± SE |",
        "| --- | --- | --- | --- |",
    ]
    for key, row in report["comparison"]["scores"].items():
        a, b = row["float32"], row["bfloat16"]
        lines.append(
            f"| {key} | {a['mean']:.2f} ± {a['std']:.2f} | {b['mean']:.2f} ± "
            f"{b['std']:.2f} | {row['difference']:+.2f} ± {row['standard_error']:.2f} |"
        )
    counts = report["comparison"]["all_ten_digits"]
    lines += [
        "",
        f"Grids with all ten digits: float32 {counts['float32']} of "
        f"{len(report['float32'])}, bfloat16 {counts['bfloat16']} of "
        f"{len(report['bfloat16'])}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--float32", nargs="+", type=Path, required=True)
    parser.add_argument("--bfloat16", nargs="+", type=Path, required=True)
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT / "results" / "precision"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        float32 = [read_run(f) for f in args.float32]
        bfloat16 = [read_run(f) for f in args.bfloat16]
        for run, wanted in [(r, "float32") for r in float32] + [
            (r, "bfloat16") for r in bfloat16
        ]:
            if run["precision"] != wanted:
                raise ValueError(f"{run['folder']}: trained in {run['precision']}")
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    import vae_helpers as vh  # after the folders are checked: errors come at once

    for run in float32 + bfloat16:
        run["digits_held"] = vh.digits_held(run.pop("cells"))
    report = {
        "benchmark": "float32 against bfloat16 over seeds (compare_precision.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "float32": float32,
        "bfloat16": bfloat16,
        "comparison": compare(float32, bfloat16),
    }
    vh.write_report(report, markdown(report), args.output_dir, "summary")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

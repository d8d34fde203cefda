"""The study: what β, the latent size, the seed and binarised pixels do to the model.

    python benchmarks/study.py                        # all 12 runs, one by one
    python benchmarks/study.py --only default,seed-7  # a subset (2 processes: README)
    python benchmarks/study.py --table                # rebuild summary.json / .md
    python benchmarks/study.py --quick                # CI smoke run: fast mode, tiny

Every run is `python vae.py`'s default except the one setting varied, trained by
`vh.train_and_save` and scored with β = 1 whatever β it trained with. A run writes
its folder (`train_and_save`'s files plus `summary.json`, its row of the table)
into results/study/<run>/ as it finishes; a run whose folder holds a finished
run of the same settings is skipped, so an interrupted study resumes where it
stopped. After each run, and with --table, results/study/summary.json and
summary.md are rebuilt from the folders there. Definitions: benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # vae.py's argument parser, shared with the CLI

import vae_helpers as vh  # noqa: E402
from vae import OneLineParser, choice_list  # noqa: E402

tf = vh.tf
PROG = "study.py"
SEEDS = (1337, 7, 42, 123, 2024)  # the default's seed and four others
TEST_DRAW_SEED = 0  # the one Bernoulli draw of the binarised test set, for every run
QUICK_IW_K = 50
MIN_CELLS = vh.HELD_MIN_CELLS  # a grid holds a digit if this many cells read as it
CONFIDENCE = 0.9
ROW = "summary.json"  # a run's row of the table, beside train_and_save's files
CODES = "codes.npz"  # z_mean of the first test images, for the chapter's scatter
CODE_IMAGES = 5000


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of the study: the settings that differ from vh.DEFAULTS."""

    groups: tuple[str, ...]  # the table sections it belongs to
    changes: dict = dataclasses.field(default_factory=dict)
    binarised: bool = False


def study_runs() -> dict[str, Run]:
    """The 12 runs, in the order a single process runs them."""
    runs = {"default": Run(("beta", "latent", "seeds"))}  # β 1, latent 2, seed 1337
    runs |= {f"seed-{s}": Run(("seeds",), {"seed": s}) for s in SEEDS[1:]}
    runs["binarised"] = Run(("binarised",), {"iw_images": None}, binarised=True)
    runs |= {f"beta-{b:g}": Run(("beta",), {"kl_weight": b}) for b in (0.25, 0.5, 2, 4)}
    runs |= {f"latent-{d}": Run(("latent",), {"latent_dim": d}) for d in (8, 32)}
    return runs


RUNS = study_runs()


def run_config(run: Run, quick: bool) -> vh.RunConfig:
    """The default with the run's changes; --quick also takes few IW samples."""
    quick_changes = {"iw_k": QUICK_IW_K} if quick else {}
    return dataclasses.replace(vh.DEFAULTS, **run.changes, **quick_changes)


# ----------------------------------------------------------------------------
# Binarised MNIST: every pixel drawn as Bernoulli(its intensity)
# ----------------------------------------------------------------------------


def binarise(x, seed: int):
    """One fixed draw per pixel (NumPy): the binarised test set."""
    uniform = np.random.default_rng(seed).random(x.shape, dtype=np.float32)
    return (uniform < x).astype(np.float32)


def binarised_batches(batches, seed: int):
    """The same batches, each pixel drawn afresh as Bernoulli(intensity).

    `Dataset.random(rerandomize_each_iteration=True)` gives each batch a pair of
    seeds that changes every time Keras starts an epoch's iterator, and is the
    same from run to run. 0/1 images come out as they went in.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def draw(images, pair):
        uniform = tf.random.stateless_uniform(tf.shape(images), seed=pair)
        return tf.cast(uniform < images, images.dtype)

    pairs = seeds.batch(2)
    options = batches.options()
    return (
        tf.data.Dataset.zip(batches, pairs).map(draw).prefetch(2).with_options(options)
    )


@contextlib.contextmanager
def binarised_mnist(seed: int):
    """`vh.train_and_save` on binarised MNIST, while the module has no hook for it.

    Its two data calls are wrapped for the run: the test set is drawn once
    (TEST_DRAW_SEED), the training batches afresh every epoch (`seed`).
    """
    load_mnist, image_batches = vh.load_mnist, vh.image_batches

    def load(path=None):
        (x_train, y_train), (x_test, y_test) = load_mnist(path)
        return (x_train, y_train), (binarise(x_test, TEST_DRAW_SEED), y_test)

    def batches(x, batch_size, shuffle_seed=None):
        return binarised_batches(image_batches(x, batch_size, shuffle_seed), seed)

    with (
        mock.patch.object(vh, "load_mnist", load),
        mock.patch.object(vh, "image_batches", batches),
    ):
        yield


# ----------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------


def finished_run(folder: Path, config: vh.RunConfig, quick: bool) -> dict | None:
    """The metrics of a finished run of these settings in `folder`, else None."""
    try:
        metrics = vh.check_run(folder)
    except vh.IncompleteRun:
        return None
    if metrics["config"] != config.to_dict() or metrics["fast_mode"] != quick:
        print(f"{folder.name}: holds a run of other settings; training again")
        return None
    return metrics


def confident_cells_per_digit(folder: Path, classifier, n: int) -> list[int]:
    """How many grid cells the classifier reads as each digit, confidently.

    Read from grid.png (8-bit), since metrics.json keeps only the digits found.
    """
    from PIL import Image

    grid = np.asarray(Image.open(folder / "grid.png"), dtype=np.float32) / 255.0
    probabilities = classifier.predict(vh.grid_cells(grid, n)[..., None], verbose=0)
    sure = probabilities.max(-1) >= CONFIDENCE
    return np.bincount(probabilities.argmax(-1)[sure], minlength=10).tolist()


SCORES = (
    "test_reconstruction",
    "test_kl",
    "test_neg_elbo",
    "test_iw_bound",
    "test_iw_standard_error",
    "iw_k",
    "iw_images",
    "test_kl_per_dimension",
    "grid_digits_found",
    "grid_confident_share",
    "train_seconds",
)


def summary_row(name: str, folder: Path, metrics: dict, classifier) -> dict:
    """The run's row of the table: settings, scores, the grid's digits, times."""
    run, config = RUNS[name], metrics["config"]
    cells = confident_cells_per_digit(folder, classifier, config["grid_size"])
    finished = (folder / "metrics.json").stat().st_mtime
    return {
        "run": name,
        "groups": list(run.groups),
        "binarised": run.binarised,
        "kl_weight": config["kl_weight"],
        "latent_dim": config["latent_dim"],
        "seed": config["seed"],
        **{key: metrics[key] for key in SCORES if key in metrics},
        "grid_confident_cells_per_digit": cells,
        "grid_digits_held": vh.digits_held(cells),
        "run_seconds": sum(v for k, v in metrics.items() if k.endswith("_seconds")),
        "epochs": metrics["epochs"],
        "train_images": metrics["train_images"],
        "test_images": metrics["test_images"],
        "fast_mode": metrics["fast_mode"],
        "precision_used": metrics["precision_used"],
        "machine": machine_info(),  # where the row was made: right after the run
        "run_id": metrics["run_id"],
        "finished": datetime.datetime.fromtimestamp(finished, datetime.UTC).isoformat(
            timespec="seconds"
        ),
    }


def read_row(folder: Path, run_id: str) -> dict | None:
    """The folder's summary row, if it is this run's (a rerun keeps old files)."""
    with contextlib.suppress(OSError, ValueError):
        row = json.loads((folder / ROW).read_text())
        if row.get("run_id") == run_id:
            return row
    return None


def ensure_row(name: str, folder: Path, metrics: dict, classifier) -> dict:
    row = read_row(folder, metrics["run_id"])
    if row is None:
        row = summary_row(name, folder, metrics, classifier)
        vh.write_json(row, folder / ROW)
    return row


def ensure_codes(name: str, folder: Path, metrics: dict, data=None) -> bool:
    """Writes folder/codes.npz (z_mean, labels, run_id) if the weights are here.

    The committed folders keep no weights (too large for git), so the chapter
    reads the codes instead; a run whose weights are gone keeps its old codes.
    """
    target = folder / CODES
    with contextlib.suppress(OSError, ValueError, KeyError):
        with np.load(target) as codes:
            if str(codes["run_id"]) == metrics["run_id"]:
                return True
    weights = folder / "vae.weights.h5"
    if not weights.is_file():
        return False
    config = metrics["config"]
    vae, encoder, _ = vh.build_vae(config["latent_dim"], 1.0, config["seed"])
    vh.load_weights(vae, weights)
    _, (x_test, y_test) = vh.load_mnist(data)
    x, labels = x_test[:CODE_IMAGES], y_test[:CODE_IMAGES]
    if RUNS[name].binarised:  # the same binarised test images the run was scored on
        x = binarise(x_test, TEST_DRAW_SEED)[:CODE_IMAGES]
    z_mean, _ = vh.encode(encoder, x)
    with vh.atomic_path(target) as tmp:
        with open(tmp, "wb") as file:
            np.savez_compressed(
                file, z_mean=z_mean, labels=labels, run_id=np.str_(metrics["run_id"])
            )
    return True


def train_run(name: str, out: Path, data, quick: bool, classifier) -> dict:
    """Trains and scores one run unless its folder holds it already; its row."""
    run, folder = RUNS[name], out / name
    config = run_config(run, quick)
    metrics = finished_run(folder, config, quick)
    if metrics is not None:
        print(f"{name}: finished before (run {metrics['run_id'][:8]}); skipped")
    else:
        changes = ", ".join(f"{k}={v}" for k, v in run.changes.items()) or "none"
        print(f"\n== {name}: changes {changes}; binarised {run.binarised}", flush=True)
        with (
            binarised_mnist(config.seed) if run.binarised else contextlib.nullcontext()
        ):
            vh.train_and_save(config, folder, data=data, verbose=2)
        metrics = vh.check_run(folder)
    ensure_codes(name, folder, metrics, data)
    return ensure_row(name, folder, metrics, classifier)


# ----------------------------------------------------------------------------
# The table, from whatever runs are there
# ----------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU model, cores and whether the CPU computes bfloat16 natively."""
    bf16 = sorted(vh.cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return {
        "cpu_model": vh.cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "bf16": bool(bf16),
        "bf16_flags": bf16,
        "avx512": "avx512f" in vh.cpu_flags(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


def spread(values) -> dict:
    """Mean, sample standard deviation, min and max of the seeds' scores.

    One seed has no spread: its std is null (strict JSON has no NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return {
        "n": len(values),
        "mean": float(values.mean()),
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
    }


SPREAD_SCORES = (
    "test_neg_elbo",
    "test_reconstruction",
    "test_kl",
    "test_iw_bound",
    "grid_confident_share",
)


def seed_summary(rows: dict) -> dict:
    seeds = [r for r in rows.values() if "seeds" in r["groups"]]
    if not seeds:
        return {}
    scores = {k: spread([r[k] for r in seeds]) for k in SPREAD_SCORES if k in seeds[0]}
    return {
        **scores,
        "digits_held": {str(r["seed"]): r["grid_digits_held"] for r in seeds},
        "seeds_with_all_ten_digits": sum(
            len(r["grid_digits_held"]) == 10 for r in seeds
        ),
    }


def collect_rows(out: Path, quick: bool, classifier_of, data=None) -> dict:
    """The rows of every finished run in `out` (quick or full), in order."""
    rows = {}
    for name in RUNS:
        folder = out / name
        try:  # committed folders have no weights (git-ignored): read the manifest
            metrics = json.loads((folder / "metrics.json").read_text())
            manifest = json.loads((folder / vh.MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if metrics.get("run_id") != manifest.get("run_id"):
            continue
        if metrics.get("fast_mode") != quick:
            continue
        rows[name] = read_row(folder, metrics["run_id"]) or ensure_row(
            name, folder, metrics, classifier_of()
        )
        ensure_codes(name, folder, metrics, data)
    return rows


def run_machines(out: Path, rows: dict) -> list[str]:
    """The distinct CPUs the runs trained on: a study's times compare on one only."""
    found = set()
    for name in rows:
        metrics = json.loads((out / name / "metrics.json").read_text())
        machine = metrics.get("machine")
        if not machine:
            found.add("not recorded")
            continue
        bf16 = ", ".join(machine["native_bf16"]) or "none"
        found.add(f"{machine['cpu_model']} (native bf16: {bf16})")
    return sorted(found)


def build_table(out: Path, quick: bool, classifier_of, data=None) -> dict:
    """Rewrites out/summary.json and out/summary.md; returns the summary."""
    rows = collect_rows(out, quick, classifier_of, data)
    summary = {
        "study": "beta, latent size, seeds, binarised MNIST (benchmarks/study.py)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine_info(),
        "run_machines": run_machines(out, rows),
        "versions": vh.versions(),
        "defaults": vh.DEFAULTS.to_dict(),
        "complete": set(rows) == set(RUNS),
        "missing": [name for name in RUNS if name not in rows],
        "total_run_seconds": sum(r["run_seconds"] for r in rows.values()),
        "seeds": seed_summary(rows),
        "runs": rows,
    }
    vh.write_json(summary, out / "summary.json")
    with vh.atomic_path(out / "summary.md") as tmp:
        Path(tmp).write_text(markdown(summary))
    return summary


COLUMNS = (
    "run",
    "β",
    "latent",
    "seed",
    "pixels",
    "reconstruction",
    "KL (rate)",
    "−ELBO",
    "IW bound ± SE",
    "KL per dimension",
    "digits held (≥3 cells)",
    "confident share",
    "train (s)",
)


def table_row(row: dict) -> list[str]:
    held = row["grid_digits_held"]
    iw = (
        f"{row['test_iw_bound']:.2f} ± {row['test_iw_standard_error']:.2f}"
        if "test_iw_bound" in row
        else "—"
    )
    kl_dims = " ".join(f"{v:.2f}" for v in row["test_kl_per_dimension"])
    return [
        row["run"],
        f"{row['kl_weight']:g}",
        str(row["latent_dim"]),
        str(row["seed"]),
        "binarised" if row["binarised"] else "grey",
        f"{row['test_reconstruction']:.2f}",
        f"{row['test_kl']:.2f}",
        f"{row['test_neg_elbo']:.2f}",
        iw,
        kl_dims if len(row["test_kl_per_dimension"]) <= 8 else active_dims(row),
        f"{len(held)}/10 ({' '.join(map(str, held))})",
        f"{row['grid_confident_share']:.0%}",
        f"{row['train_seconds']:.0f}",
    ]


def active_dims(row: dict, threshold: float = 0.1) -> str:
    """For long codes: how many dimensions carry more than `threshold` nats."""
    kl = row["test_kl_per_dimension"]
    return f"{sum(v > threshold for v in kl)} of {len(kl)} above {threshold:g}"


def markdown(summary: dict) -> str:
    machine, versions = summary["machine"], summary["versions"]
    lines = [
        "# Study: β, latent size, seeds, binarised MNIST"
        + (" (quick smoke run)" if summary["quick"] else ""),
        "",
        f"{summary['date']} · {machine['cpu_model']}, {machine['cores']} cores, "
        f"native bf16: {'yes' if machine['bf16'] else 'no'} · TensorFlow "
        f"{versions['tensorflow']}, Keras {versions['keras']} · "
        f"{len(summary['runs'])} of {len(RUNS)} runs"
        + (f" (missing: {', '.join(summary['missing'])})" if summary["missing"] else "")
        + f" · {summary['total_run_seconds'] / 60:.1f} minutes of runs",
        "",
        f"The runs trained on {len(summary['run_machines'])} machine(s): "
        + "; ".join(summary["run_machines"])
        + ".",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(table_row(r)) + " |" for r in summary["runs"].values()]
    seeds = summary["seeds"]
    if seeds:
        lines += [
            "",
            f"Over the {seeds['test_neg_elbo']['n']} seeds "
            "(mean ± sample std, min–max):",
            "",
        ]
        for key in SPREAD_SCORES:
            if key in seeds:
                s = seeds[key]
                std = (
                    "no spread from one seed" if s["std"] is None else f"{s['std']:.3f}"
                )
                lines.append(
                    f"- {key}: {s['mean']:.3f} ± {std} ({s['min']:.3f}–{s['max']:.3f})"
                )
        lines.append(
            f"- grids with all ten digits (≥{MIN_CELLS} confident cells each): "
            f"{seeds['seeds_with_all_ten_digits']} of {seeds['test_neg_elbo']['n']}"
        )
    lines += [
        "",
        "Every score is on the test set with β = 1, whatever β the run trained "
        "with. The seed's weighting (β ≈ 0.392) is the benchmark's configuration "
        "(a). With latent size above 2 the grid varies z1 and z2 and holds the "
        "other dimensions at 0. On grey pixels the −ELBO and the IW bound are "
        "bounds on the Bernoulli objective, not a likelihood; on binarised pixels "
        "they bound a true log-likelihood (benchmarks/README.md compares them "
        "with published results).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--only",
        type=choice_list(RUNS, "run(s)"),
        default=list(RUNS),
        help="runs to do, comma-separated",
    )
    add("--quick", action="store_true", help="fast mode (VAE_FAST=1), 1 epoch, k=50")
    add("--table", action="store_true", help="only rebuild summary.json and .md")
    add("--data", metavar="PATH", help="local MNIST .npz (else $VAE_MNIST_PATH)")
    add("--output-dir", type=Path, help="default results/study (-quick with --quick)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quick = args.quick or vh.fast_mode()
    if quick:
        os.environ[vh.FAST_ENV] = "1"  # train_and_save reads it: subset, 1 epoch
    out = args.output_dir or ROOT / "results" / ("study-quick" if quick else "study")
    classifier = []

    def classifier_of():
        if not classifier:
            classifier.append(vh.load_or_train_classifier(args.data)[0])
        return classifier[0]

    tf.get_logger().setLevel("ERROR")
    failed = []
    try:
        for name in [] if args.table else args.only:
            try:
                train_run(name, out, args.data, quick, classifier_of())
            except vh.TrainingDiverged as error:
                print(f"{PROG}: {name}: {error}", file=sys.stderr)
                failed.append(name)
            build_table(out, quick, classifier_of, args.data)
        summary = build_table(out, quick, classifier_of, args.data)
    except (vh.DataError, vh.ConfigError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished runs are kept", file=sys.stderr)
        return 130
    print(f"\n{markdown(summary)}\nwrote {out / 'summary.json'} and summary.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

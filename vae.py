"""Train the convolutional VAE on MNIST and write a 15x15 grid of generated digits.

    python vae.py                      # 20 epochs -> results/vae/grid.png
    python vae.py --data mnist.npz     # offline: a local MNIST file in Keras' layout
    VAE_FAST=1 python vae.py           # smoke run: small subset, 1 epoch

Writes into --output-dir (default results/vae): grid.png, metrics.json,
history.json, vae.weights.h5 and run.json, swapped in whole when the run ends.
TensorFlow is imported only once the flags are known to be good, so `--help`
and every flag error answer at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from vae_config import PRECISIONS, RunConfig

MNIST_PATH_ENV = "VAE_MNIST_PATH"  # as vae_helpers.MNIST_PATH_ENV


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends with one line naming it, not the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def any_int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text):
    value = any_int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number, got {value}"
        )
    return value


def non_negative_int(text):
    value = any_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def image_count(text):
    return None if text == "all" else positive_int(text)


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text):
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def choice_list(choices, what):
    """A flag type for 'a,c': those of `choices`, in their order; else one line."""

    def parse(text):
        names = {n.strip() for n in text.split(",") if n.strip()}
        unknown = sorted(names - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {','.join(unknown) or repr(text)}; "
                f"choose from {','.join(choices)}"
            )
        return [n for n in choices if n in names]

    return parse


def parse_args(argv=None):
    """Flags -> (RunConfig, data path, output dir); bad ones end in one line."""
    d = RunConfig()
    parser = OneLineParser(
        prog="vae.py",
        description="Train the MNIST VAE and write a grid of generated digits.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--epochs", type=positive_int, default=d.epochs, help="passes over the data")
    add("--batch-size", type=positive_int, default=d.batch_size, help="images a step")
    add(
        "--latent-dim",
        type=positive_int,
        default=d.latent_dim,
        help="size of z; the grid varies z1 and z2 and holds the others at 0",
    )
    add(
        "--kl-weight",
        type=non_negative_float,
        default=d.kl_weight,
        help="β in recon + β·KL; 1 is the true ELBO (the seed's weighting is 0.392)",
    )
    add(
        "--kl-warmup-epochs",
        type=non_negative_float,
        default=d.kl_warmup_epochs,
        help="ramp β from 0 over this many epochs (a guard against collapse); 0 = off",
    )
    add(
        "--kl-cycles",
        type=positive_int,
        default=d.kl_cycles,
        help="restart the β ramp in each of N equal parts of the run (cyclical"
        " annealing); 1 = one ramp",
    )
    add(
        "--learning-rate",
        type=positive_float,
        default=d.learning_rate,
        help="Adam's peak learning rate",
    )
    add(
        "--lr-warmup-epochs",
        type=non_negative_float,
        default=d.lr_warmup_epochs,
        help="raise the learning rate from 0 over this many epochs, then cosine decay",
    )
    add("--seed", type=any_int, default=d.seed, help="same seed, same results")
    add(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="float32, bfloat16 (mixed: float32 weights and loss), or auto: "
        "bfloat16 only on CPUs with native bf16 (avx512_bf16 or amx_bf16)",
    )
    add(
        "--iw-k",
        type=non_negative_int,
        default=d.iw_k,
        help="importance samples per image for the IW bound; 0 = skip it",
    )
    add(
        "--iw-images",
        type=image_count,
        default=d.iw_images,
        help="how many test images (the first N) the IW bound uses, or 'all'",
    )
    add(
        "--no-grid-check",
        action="store_true",
        help="skip reading the grid with the cached digit classifier",
    )
    add(
        "--data",
        metavar="PATH",
        help=f"local MNIST .npz in Keras' layout (else ${MNIST_PATH_ENV}, "
        "else Keras downloads it)",
    )
    add(
        "--output-dir",
        type=Path,
        default=None,
        help="where results go (default results/vae; results/vae-fast in fast mode)",
    )
    add(
        "--xla",
        action=argparse.BooleanOptionalAction,
        default=d.xla,
        help="compile each training step with XLA (jit_compile); default off: "
        "slower at batch 32 on the CPUs measured, faster at 128",
    )
    add(
        "--devices",
        type=positive_int,
        default=1,
        help="train data-parallel on N devices (KERAS_BACKEND=jax; on a CPU, N "
        "host devices via XLA_FLAGS, for testing: no speed-up)",
    )
    args = parser.parse_args(argv)
    if args.devices > 1 and os.environ.get("KERAS_BACKEND") != "jax":
        parser.error(
            f"--devices {args.devices} needs KERAS_BACKEND=jax "
            "(data-parallel training runs on Keras' JAX distribution API)"
        )
    fields = {f for f in RunConfig.__dataclass_fields__ if hasattr(args, f)}
    config = RunConfig(
        **{f: getattr(args, f) for f in fields}, grid_check=not args.no_grid_check
    )
    problems = config.problems()
    if problems:
        parser.error(problems[0])
    return config, args.data, args.output_dir, args.devices


def expose_host_devices(devices: int):
    """Lets JAX split this CPU into `devices` devices; set before JAX starts.

    Only the CPU platform is affected: on a machine with GPUs, JAX uses those.
    """
    flag = f"--xla_force_host_platform_device_count={devices}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def check_output_dir(path: Path):
    """Fails early, before training, if results could not be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OSError(f"cannot write to output dir {path}: {error.strerror}") from None


def report(metrics, output_dir):
    """The run's scores and times, as a reader wants them at the end."""
    print(
        f"\ntest negative ELBO: {metrics['test_neg_elbo']:.2f} nats/image "
        f"= reconstruction {metrics['test_reconstruction']:.2f} "
        f"+ KL {metrics['test_kl']:.2f} (β = 1, {metrics['test_images']} test "
        "images; Bernoulli cross-entropy on grey pixels, not a normalised density)"
    )
    print(
        "KL per latent dimension:",
        " ".join(f"{v:.2f}" for v in metrics["test_kl_per_dimension"]),
    )
    if "test_iw_bound" in metrics:
        print(
            f"importance-weighted bound (k={metrics['iw_k']}, first "
            f"{metrics['iw_images']} test images): "
            f"{metrics['test_iw_bound']:.2f} ± "
            f"{metrics['test_iw_standard_error']:.2f} nats/image"
        )
    if "grid_digits_found" in metrics:
        print(
            f"grid check: {len(metrics['grid_digits_found'])} of 10 digits "
            f"({' '.join(map(str, metrics['grid_digits_found']))}); "
            f"{metrics['grid_confident_share']:.0%} of cells read with confidence "
            f">= 0.9 by a digit classifier "
            f"({metrics['classifier_test_accuracy']:.2%} test accuracy)"
        )
    print(f"precision: {metrics['precision_used']} ({metrics['precision_why']})")
    stages = ("train", "eval", "iw", "grid", "check")
    seconds = {key: metrics.get(f"{key}_seconds", 0.0) for key in stages}
    print(
        f"time: training {seconds['train']:.1f} s ({metrics['epochs']} epochs), "
        f"ELBO {seconds['eval']:.1f} s, IW bound {seconds['iw']:.1f} s, "
        f"grid {seconds['grid']:.1f} s, grid check {seconds['check']:.1f} s"
    )
    print(f"wrote grid.png, metrics.json, history.json, vae.weights.h5 to {output_dir}")


def main(argv=None):
    config, data, output_dir, devices = parse_args(argv)
    if devices > 1:
        expose_host_devices(devices)
    import vae_helpers as vh  # TensorFlow loads here, once the flags are good

    try:
        output_dir = output_dir or vh.results_dir()
        check_output_dir(output_dir)
        if vh.fast_mode():
            print(f"fast mode ({vh.FAST_ENV}=1): a small subset, 1 epoch")
        if config.latent_dim > 2:
            print(
                f"note: latent_dim={config.latent_dim}; the grid varies z1 and z2 "
                f"and holds the other {config.latent_dim - 2} dimensions at 0"
            )
        if devices > 1:
            print(f"data-parallel over {devices} devices: {vh.device_names(devices)}")
        *_, metrics, _ = vh.train_and_save(
            config, output_dir, data=data, devices=devices
        )
        report(metrics, output_dir)
    except (vh.DataError, vh.ConfigError, OSError) as error:
        print(f"vae.py: error: {error}", file=sys.stderr)
        return 2
    except vh.TrainingDiverged as error:
        print(f"vae.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vae.py: interrupted; the output dir is as it was", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())

"""Trains one candidate default and reads its grid after every epoch.

    python benchmarks/grid_per_epoch.py --batch-size 32
    python benchmarks/grid_per_epoch.py --batch-size 64 --seed 7 --kl-warmup-epochs 1

Takes `python vae.py`'s flags (its parser, so its defaults and checks) and trains
that run's model and schedule (vh.build_vae, vh.compile_for_run, vh.train_vae
with the test set as validation data). After each epoch it prints the validation
loss and which digits the cached classifier reads in the 15x15 grid
(`vh.grid_digit_check`), so one run shows when a digit appears or merges into
another; at the end, the test −ELBO. The README's comparison of defaults was made
with it, two runs side by side, each pinned to one core (`taskset -c 0` / `-c 1`).
Writes a JSON record of every epoch and the final grid to --output-dir (default
results/grid-per-epoch/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # vae.py's parser, shared with the CLI

import vae_helpers as vh  # noqa: E402
from vae import parse_args  # noqa: E402

keras = vh.keras


class GridCheck(keras.callbacks.Callback):
    """After each epoch: the validation loss and the digits read in the grid."""

    def __init__(self, decoder, classifier, grid_size):
        super().__init__()
        self.decoder, self.classifier, self.n, self.rows = (
            decoder,
            classifier,
            grid_size,
            [],
        )

    def on_epoch_end(self, epoch, logs=None):
        grid = vh.decode_grid(self.decoder, self.n)
        found = vh.grid_digit_check(self.classifier, grid, self.n)
        row = {
            "epoch": epoch + 1,
            "val_loss": float(logs["val_loss"]),
            "digits_found": found["digits_found"],
            "confident_share": found["confident_share"],
            "seconds": logs["seconds"],  # vh.EpochTimer's, training and validation
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def main(argv=None):
    config, data, output_dir, devices = parse_args(argv)
    if devices > 1:
        sys.exit("grid_per_epoch.py: error: --devices: this probe trains on one device")
    output_dir = output_dir or ROOT / "results" / "grid-per-epoch"
    (x_train, _), (x_test, _) = vh.load_mnist(data)
    classifier, _ = vh.load_or_train_classifier(data)
    timer = vh.Stopwatch()

    keras.utils.set_random_seed(config.seed)
    vae, encoder, decoder = vh.build_vae(
        config.latent_dim, config.kl_weight, config.seed
    )
    vh.compile_for_run(
        vae,
        len(x_train),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.lr_warmup_epochs,
        config.xla,
    )
    check = GridCheck(decoder, classifier, config.grid_size)
    with timer("train"):
        vh.train_vae(
            vae,
            x_train,
            x_test,
            epochs=config.epochs,
            batch_size=config.batch_size,
            kl_warmup_epochs=config.kl_warmup_epochs,
            verbose=2,
            callbacks=[check],
            seed=config.seed,
        )
    with timer("eval"):
        scores = vh.evaluate_elbo(encoder, decoder, x_test, seed=config.seed)
    print("final", json.dumps(scores), flush=True)

    name = f"b{config.batch_size}-s{config.seed}-kl{config.kl_warmup_epochs:g}"
    if config.learning_rate != vh.DEFAULTS.learning_rate:
        name += f"-lr{config.learning_rate:g}"
    vh.save_grid_png(
        vh.decode_grid(decoder, config.grid_size), output_dir / f"{name}.png"
    )
    record = {
        "settings": config.to_dict() | {"data": data, "output_dir": str(output_dir)},
        "epochs": check.rows,
        "final": scores,
        "seconds": timer.seconds,
    }
    vh.write_json(record, output_dir / f"{name}.json")


if __name__ == "__main__":
    main()

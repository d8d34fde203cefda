"""Trains one candidate default and reads its grid after every epoch.

    python benchmarks/grid_per_epoch.py --batch-size 32
    python benchmarks/grid_per_epoch.py --batch-size 64 --seed 7 --kl-warmup-epochs 1

The schedule and model are `python vae.py`'s (vh.build_vae, vh.compile_for_run,
vh.train_vae with the test set as validation data); only the flags given differ.
After each epoch it prints the validation loss and which digits the cached
classifier reads in the 15x15 grid (`vh.grid_digit_check`), so one run shows
when a digit appears or merges into another; at the end, the test −ELBO. The
README's batch-size comparison was made with it, two runs side by side, each
pinned to one core (`taskset -c 0` / `-c 1`). Writes a JSON record of every
epoch and the final grid to --output-dir (default results/grid-per-epoch/).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import vae_helpers as vh

keras = vh.keras
ROOT = Path(__file__).resolve().parents[1]


class GridCheck(keras.callbacks.Callback):
    """After each epoch: the validation loss and the digits read in the grid."""

    def __init__(self, decoder, classifier):
        super().__init__()
        self.decoder, self.classifier, self.rows = decoder, classifier, []
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        found = vh.grid_digit_check(self.classifier, vh.decode_grid(self.decoder))
        row = {
            "epoch": epoch + 1,
            "val_loss": float(logs["val_loss"]),
            "digits_found": found["digits_found"],
            "confident_share": found["confident_share"],
            "seconds": time.perf_counter() - self.start,
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def main(argv=None):
    d = vh.DEFAULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=d["batch_size"])
    parser.add_argument("--epochs", type=int, default=d["epochs"])
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--learning-rate", type=float, default=d["learning_rate"])
    parser.add_argument("--lr-warmup-epochs", type=float, default=d["lr_warmup_epochs"])
    parser.add_argument("--kl-warmup-epochs", type=float, default=d["kl_warmup_epochs"])
    parser.add_argument("--data", help="local MNIST .npz")
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT / "results" / "grid-per-epoch"
    )
    args = parser.parse_args(argv)

    (x_train, _), (x_test, _) = vh.load_mnist(args.data)
    classifier, _ = vh.load_or_train_classifier(args.data)
    keras.utils.set_random_seed(args.seed)
    vae, encoder, decoder = vh.build_vae(d["latent_dim"], d["kl_weight"], args.seed)
    vh.compile_for_run(
        vae,
        len(x_train),
        args.epochs,
        args.batch_size,
        args.learning_rate,
        args.lr_warmup_epochs,
    )
    check = GridCheck(decoder, classifier)
    vh.train_vae(
        vae,
        x_train,
        x_test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        kl_warmup_epochs=args.kl_warmup_epochs,
        verbose=2,
        callbacks=[check],
        seed=args.seed,
    )
    scores = vh.evaluate_elbo(encoder, decoder, x_test, seed=args.seed)
    print("final", json.dumps(scores), flush=True)

    name = f"b{args.batch_size}-s{args.seed}-kl{args.kl_warmup_epochs:g}"
    if args.learning_rate != d["learning_rate"]:
        name += f"-lr{args.learning_rate:g}"
    vh.save_grid_png(vh.decode_grid(decoder), args.output_dir / f"{name}.png")
    record = {"settings": vars(args) | {"output_dir": str(args.output_dir)}}
    vh.write_json(
        record | {"epochs": check.rows, "final": scores},
        args.output_dir / f"{name}.json",
    )


if __name__ == "__main__":
    main()

"""The settings of one training run, with their defaults and their limits.

Kept apart from `vae_helpers` because it imports no TensorFlow: `python vae.py
--help` and every flag error answer at once, not after a multi-second import.
`vae.py`, `vae_helpers.train_and_save`, the benchmark and `metrics.json` all
use this one object.
"""

from __future__ import annotations

import dataclasses
import math

SEED_MAX = 2**32 - 1  # NumPy and TensorFlow seeds are unsigned 32-bit integers
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What `python vae.py` trains and scores; the defaults were measured (README)."""

    epochs: int = 20  # 10 held all ten digits for 1 or 2 seeds of 5 (README)
    batch_size: int = 32
    latent_dim: int = 2
    kl_weight: float = 1.0  # β; 1 is the true ELBO
    kl_warmup_epochs: float = 3.0  # β ramps from 0 over this many epochs
    kl_cycles: int = 1  # > 1: the ramp restarts in each of this many equal parts
    learning_rate: float = 2e-3  # Adam's peak: linear warm-up, then cosine to 0
    lr_warmup_epochs: float = 0.5
    # XLA made batch-32 steps slower on the CPUs measured (README); `--xla` turns it on.
    xla: bool = False
    precision: str = "float32"  # "auto" picks bfloat16 where the CPU has native bf16
    seed: int = 1337
    iw_k: int = 1000  # importance samples per image; 0 skips the bound
    iw_images: int | None = 1000  # the first N test images; None: all of them
    grid_size: int = 15
    grid_check: bool = True

    def problems(self) -> list[str]:
        """Each setting the code cannot take, as '--flag: why' (empty: all good)."""
        checks = [
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            (
                "latent_dim",
                self.latent_dim >= 2,
                "must be at least 2 (the grid spans two latent axes)",
            ),
            (
                "kl_weight",
                _finite(self.kl_weight) and self.kl_weight >= 0,
                "must be a finite number >= 0",
            ),
            (
                "kl_warmup_epochs",
                _finite(self.kl_warmup_epochs) and self.kl_warmup_epochs >= 0,
                "must be a finite number >= 0",
            ),
            (
                "kl_cycles",
                isinstance(self.kl_cycles, int) and self.kl_cycles >= 1,
                "must be at least 1",
            ),
            (
                "kl_cycles",
                not isinstance(self.kl_cycles, int)
                or self.kl_cycles < 2
                or self.kl_warmup_epochs <= self.epochs / self.kl_cycles,
                "each cycle must be at least as long as --kl-warmup-epochs, "
                "or β never reaches its target",
            ),
            (
                "learning_rate",
                _finite(self.learning_rate) and self.learning_rate > 0,
                "must be a finite number > 0",
            ),
            (
                "lr_warmup_epochs",
                _finite(self.lr_warmup_epochs) and self.lr_warmup_epochs >= 0,
                "must be a finite number >= 0",
            ),
            (
                "precision",
                self.precision in PRECISIONS,
                f"must be one of {', '.join(PRECISIONS)}",
            ),
            ("seed", 0 <= self.seed <= SEED_MAX, f"must be between 0 and {SEED_MAX}"),
            ("iw_k", self.iw_k >= 0, "must be 0 (skip) or more"),
            (
                "iw_images",
                self.iw_images is None or self.iw_images >= 2,
                "must be at least 2 (a standard error needs two images) or 'all'",
            ),
            ("grid_size", self.grid_size >= 2, "must be at least 2"),
        ]
        return [f"{flag(name)}: {why}" for name, ok, why in checks if not ok]

    def for_data(self, train_images: int) -> list[str]:
        """Problems that show only once the training set's size is known."""
        if self.batch_size > train_images:
            return [
                f"{flag('batch_size')}: {self.batch_size} is more than the "
                f"{train_images} training images"
            ]
        return []

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def flag(field: str) -> str:
    """The command-line flag of a setting: batch_size -> --batch-size."""
    return "--" + field.replace("_", "-")


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

"""One short training run on whatever KERAS_BACKEND says; prints JSON.

    KERAS_BACKEND=jax python tests/backend_probe.py --out DIR
    KERAS_BACKEND=torch python tests/backend_probe.py --read DIR_A DIR_B
    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
        python tests/backend_probe.py --out DIR --devices 2

Used by tests/test_backends.py, which runs it once per backend in a process of
its own (Keras picks its backend at import). Training writes DIR/vae.weights.h5
and DIR/probe.json; --read loads each DIR's weights into a fresh model and
reports what that model computes on the same images.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vae_helpers as vh

keras = vh.keras
TRAIN_IMAGES, BATCH, EPOCHS = 1024, 64, 3
PROBE_IMAGES = 256


def probe_images():
    (x_train, _), (x_test, _) = vh.load_mnist()
    return x_train[:TRAIN_IMAGES], x_test[:PROBE_IMAGES]


def outputs_of(encoder, decoder, x_test) -> dict:
    """What a model computes on fixed inputs: codes, pixels and the test ELBO."""
    z_mean, _ = vh.encode(encoder, x_test)
    pixels = decoder.predict(vh.grid_latents(5), verbose=0)
    return {
        "z_mean": z_mean[:16].tolist(),
        "pixels": pixels.reshape(25, -1)[:, ::7].tolist(),
        "elbo": vh.evaluate_elbo(encoder, decoder, x_test, seed=0),
    }


class StepLosses(keras.callbacks.Callback):
    """Each step's loss (Keras logs running means: undone in the test)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def batch_shard_shape(distribution) -> list[int] | None:
    """The part of one batch each device gets, as the distribution lays it out."""
    if distribution is None:
        return None
    shape = (BATCH, *vh.IMAGE_SHAPE)
    layout = distribution.get_data_layout(shape).backend_layout
    return list(layout.shard_shape(shape))


def train(out: Path, devices: int = 1) -> dict:
    x_train, x_test = probe_images()
    keras.utils.set_random_seed(0)
    with vh.data_parallel(devices, {BATCH}) as distribution:
        vae, encoder, decoder = vh.build_vae(seed=0)
        vh.compile_for_run(vae, len(x_train), epochs=EPOCHS, batch_size=BATCH)
        steps = StepLosses()
        history = vh.train_vae(
            vae,
            x_train,
            epochs=EPOCHS,
            batch_size=BATCH,
            kl_warmup_epochs=1.0,
            verbose=0,
            callbacks=[steps],
            seed=0,
        )
        shard = batch_shard_shape(distribution)
    vh.save_weights(vae, out / "vae.weights.h5")
    return {
        "backend": keras.backend.backend(),
        "devices": devices,
        "batch_shard_shape": shard,
        "history": history,
        "step_losses": steps.losses,
        "kl_weight_after": float(
            keras.ops.convert_to_numpy(vh.loss_layer(vae).kl_weight)
        ),
        **outputs_of(encoder, decoder, x_test),
    }


def read(folders) -> dict:
    _, x_test = probe_images()
    found = {}
    for folder in folders:
        vae, encoder, decoder = vh.build_vae(seed=0)
        vh.load_weights(vae, Path(folder) / "vae.weights.h5")
        found[str(folder)] = outputs_of(encoder, decoder, x_test)
    return {"backend": keras.backend.backend(), "read": found}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--read", nargs="+", type=Path)
    parser.add_argument("--devices", type=int, default=1, help="JAX, data-parallel")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        report = train(args.out, args.devices)
        vh.write_json(report, args.out / "probe.json")
    else:
        report = read(args.read)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

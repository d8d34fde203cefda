"""The model parts: shapes, the sampling layer's statistics, KL and the loss layer."""

import keras
import numpy as np
import pytest
from conftest import gradient

import vae_helpers as vh

RNG = np.random.default_rng(0)


def layer_summary(model):
    """(class, filters/units, strides, activation) for each weighted layer."""
    rows = []
    for layer in model.layers:
        config = layer.get_config()
        if "filters" in config or "units" in config:
            rows.append(
                (
                    type(layer).__name__,
                    config.get("filters", config.get("units")),
                    tuple(config.get("strides", ())),
                    config["activation"],
                )
            )
    return rows


def test_encoder_is_the_seed_architecture():
    assert layer_summary(vh.build_encoder(2)) == [
        ("Conv2D", 32, (1, 1), "relu"),
        ("Conv2D", 64, (2, 2), "relu"),
        ("Conv2D", 64, (1, 1), "relu"),
        ("Conv2D", 64, (1, 1), "relu"),
        ("Dense", 32, (), "relu"),
        ("Dense", 2, (), "linear"),
        ("Dense", 2, (), "linear"),
    ]


def test_decoder_is_the_seed_architecture():
    assert layer_summary(vh.build_decoder(2)) == [
        ("Dense", 14 * 14 * 64, (), "relu"),
        ("Conv2DTranspose", 32, (2, 2), "relu"),
        ("Conv2D", 1, (1, 1), "linear"),
    ]


def test_transposed_conv_as_four_phases_is_keras_op_with_its_gradients():
    """The phase form (JAX's path in the decoder) gives Keras' outputs and gradients."""
    x = RNG.normal(size=(3, 5, 6, 4)).astype("float32")
    layer = vh.Conv2DTranspose(7, 3, strides=2, padding="same", activation="relu")
    layer.build(x.shape)
    layer.set_weights(
        [RNG.normal(size=w.shape).astype("float32") for w in layer.weights]
    )
    assert layer.is_phase_case() and type(layer).__name__ == "Conv2DTranspose"
    keras_op = keras.layers.Conv2DTranspose.call

    def outputs(call, kernel=None):
        kernel = layer.kernel if kernel is None else kernel
        with keras.StatelessScope(state_mapping=[(layer.kernel, kernel)]):
            return call(layer, keras.ops.convert_to_tensor(x))

    theirs = keras.ops.convert_to_numpy(outputs(keras_op))
    ours = keras.ops.convert_to_numpy(outputs(vh.Conv2DTranspose.call_as_phases))
    assert ours.shape == theirs.shape == (3, 10, 12, 7) and (theirs > 0).mean() > 0.3
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    grad_theirs = gradient(lambda k: outputs(keras_op, k) ** 2, kernel)
    grad_ours = gradient(
        lambda k: outputs(vh.Conv2DTranspose.call_as_phases, k) ** 2, kernel
    )
    assert np.abs(grad_theirs).max() > 1
    np.testing.assert_allclose(grad_ours, grad_theirs, rtol=1e-4, atol=1e-3)


def test_decoder_ends_in_logits_then_a_sigmoid():
    """The loss reads the logits layer; the decoder's output is their sigmoid."""
    decoder = vh.build_decoder(2)
    assert decoder.layers[-1].get_config()["activation"] == "sigmoid"
    z = RNG.normal(size=(6, 2)).astype("float32")
    logits = keras.ops.convert_to_numpy(vh.decoder_logits(decoder)(z))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(decoder(z)),
        1 / (1 + np.exp(-logits)),
        rtol=1e-5,
        atol=1e-7,
    )


@pytest.mark.parametrize("latent_dim", [2, 8])
def test_output_shapes(latent_dim):
    encoder, decoder = vh.build_encoder(latent_dim), vh.build_decoder(latent_dim)
    x = RNG.random((5, 28, 28, 1)).astype("float32")
    z_mean, z_log_var = encoder(x)
    assert z_mean.shape == (5, latent_dim) and z_log_var.shape == (5, latent_dim)
    x_decoded = keras.ops.convert_to_numpy(decoder(z_mean))
    assert x_decoded.shape == (5, 28, 28, 1)
    assert 0 < x_decoded.min() and x_decoded.max() < 1
    vae, _, _ = vh.build_vae(latent_dim)
    terms = vae(x)
    assert set(terms) == {"reconstruction", "kl"}
    assert all(terms[name].shape == (5,) for name in terms)  # one value per image


def test_sampling_has_the_right_mean_and_spread():
    n = 200_000
    mean, std = 1.5, 0.5
    z_mean = np.full((n, 2), mean, "float32")
    z_log_var = np.full((n, 2), np.log(std**2), "float32")
    z = keras.ops.convert_to_numpy(vh.Sampling(seed=1)([z_mean, z_log_var]))
    assert abs(z.mean() - mean) < 4 * std / np.sqrt(2 * n)
    assert (
        abs(z.std() - std) < 0.005
    )  # exp(log_var) instead of exp(0.5 log_var) gives 0.25


def test_sampling_takes_any_batch_size_and_repeats_with_a_seed():
    for batch in (1, 7, 300):
        inputs = [np.zeros((batch, 3), "float32")] * 2
        assert vh.Sampling(seed=3)(inputs).shape == (batch, 3)
    inputs = [np.zeros((4, 2), "float32")] * 2
    first, second = vh.Sampling(seed=5)(inputs), vh.Sampling(seed=5)(inputs)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second)
    )
    assert not np.allclose(
        keras.ops.convert_to_numpy(first),
        keras.ops.convert_to_numpy(vh.Sampling(seed=6)(inputs)),
    )


def gaussian_log_density(z, mean, log_var):
    return -0.5 * np.sum(
        np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1
    )


def test_closed_form_kl_matches_monte_carlo():
    mean = np.array([[0.8, -1.2, 0.1]], "float32")
    log_var = np.array([[-1.0, 0.5, -2.0]], "float32")
    closed_form = float(keras.ops.convert_to_numpy(vh.kl_divergence(mean, log_var))[0])
    z = mean + np.exp(0.5 * log_var) * RNG.standard_normal((400_000, 3))
    log_ratio = gaussian_log_density(z, mean, log_var) - gaussian_log_density(z, 0, 0)
    standard_error = log_ratio.std() / np.sqrt(len(z))
    assert abs(log_ratio.mean() - closed_form) < 4 * standard_error
    assert closed_form > 0


def hand_loss(x, logits, z_mean, z_log_var, beta):
    """The negative ELBO per image written out in NumPy, mean over the batch.

    BCE from logits: -[x log σ(l) + (1 - x) log(1 - σ(l))] = softplus(l) - x·l.
    """
    logits = logits.reshape(len(x), -1).astype("float64")
    x = x.reshape(len(x), -1)
    bce = (np.logaddexp(0, logits) - x * logits).sum(axis=1)
    kl = -0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)).sum(axis=1)
    return (bce + beta * kl).mean(), bce.mean(), kl.mean()


@pytest.mark.parametrize("beta", [1.0, vh.seed_kl_weight(2)])
def test_loss_layer_matches_a_hand_computation(beta):
    x = RNG.random((3, 28, 28, 1)).astype("float32")
    logits = RNG.normal(0, 6, (3, 28, 28, 1)).astype("float32")
    logits[0, :2, 0, 0] = [-40.0, 40.0]  # confidently wrong or right: no clipping
    z_mean = RNG.normal(size=(3, 2)).astype("float32")
    z_log_var = RNG.normal(size=(3, 2)).astype("float32")
    layer = vh.CustomVariationalLayer(kl_weight=beta)
    terms = layer([x, logits, z_mean, z_log_var])
    expected, bce, kl = hand_loss(x, logits, z_mean, z_log_var, beta)
    assert len(layer.losses) == 1 and layer.losses[0].shape == ()  # one scalar
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)
    for name, mean in (("reconstruction", bce), ("kl", kl)):
        per_image = keras.ops.convert_to_numpy(terms[name])
        assert per_image.shape == (3,), name
        np.testing.assert_allclose(per_image.mean(), mean, rtol=1e-5)


def test_the_model_logs_each_loss_term_as_a_metric():
    vae, _, _ = vh.build_vae(seed=0)
    vh.compile_vae(vae, 1e-12)  # the weights stay put: logs equal a fresh score
    x = RNG.random((64, 28, 28, 1)).astype("float32")
    logs = vae.fit(x, epochs=1, batch_size=64, verbose=0, shuffle=False).history
    terms = {
        k: keras.ops.convert_to_numpy(v).mean()
        for k, v in vae.predict(x, verbose=0).items()
    }
    assert {"loss", "reconstruction", "kl"} <= set(logs)
    for name in ("reconstruction", "kl"):
        assert logs[name][0] == pytest.approx(terms[name], rel=0.05), name
    assert logs["loss"][0] == pytest.approx(
        logs["reconstruction"][0] + logs["kl"][0], rel=1e-4
    )


def test_kl_sums_over_latent_dimensions():
    """A plain mean over everything would divide the KL by the latent size."""
    z_mean = np.ones((4, 8), "float32")
    z_log_var = np.zeros((4, 8), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(vh.kl_divergence(z_mean, z_log_var)), [4.0] * 4
    )


def test_seed_weighting_is_beta_0_392():
    x = RNG.random((2, 28, 28, 1)).astype("float32")
    x_decoded = RNG.uniform(0.05, 0.95, (2, 28, 28, 1)).astype("float32")
    z_mean = RNG.normal(size=(2, 2)).astype("float32")
    z_log_var = RNG.normal(size=(2, 2)).astype("float32")
    p = x_decoded.reshape(2, -1)
    mean_bce = -(x.reshape(2, -1) * np.log(p) + (1 - x.reshape(2, -1)) * np.log(1 - p))
    seed_loss = np.mean(
        mean_bce.mean(axis=1)
        - 5e-4 * np.mean(1 + z_log_var - z_mean**2 - np.exp(z_log_var), axis=-1)
    )
    beta = vh.seed_kl_weight(2)
    assert beta == pytest.approx(0.392)
    logits = np.log(x_decoded) - np.log1p(-x_decoded)
    expected, _, _ = hand_loss(x, logits, z_mean, z_log_var, beta)
    np.testing.assert_allclose(seed_loss * 784, expected, rtol=1e-5)


def test_kl_warmup_ramps_beta_then_holds_it():
    layer = vh.CustomVariationalLayer(kl_weight=0.5)
    warmup = vh.KLWarmup(layer, steps=4)
    seen = []
    for batch in range(6):
        warmup.on_train_batch_begin(batch)
        seen.append(float(layer.kl_weight.numpy()))
    assert seen == pytest.approx([0.0, 0.125, 0.25, 0.375, 0.5, 0.5])


def test_a_cyclical_kl_ramp_restarts_every_period():
    layer = vh.CustomVariationalLayer(kl_weight=0.5)
    warmup = vh.KLWarmup(layer, steps=2, period=4)
    seen = []
    for batch in range(9):
        warmup.on_train_batch_begin(batch)
        seen.append(float(layer.kl_weight.numpy()))
    assert seen == pytest.approx([0, 0.25, 0.5, 0.5, 0, 0.25, 0.5, 0.5, 0])
    warmup.on_train_end()
    assert float(layer.kl_weight.numpy()) == 0.5


def test_weights_round_trip_and_a_wrong_file_is_named(tmp_path):
    vae, _, decoder = vh.build_vae(2, seed=0)
    path = tmp_path / "vae.weights.h5"
    vh.save_weights(vae, path)
    fresh, _, fresh_decoder = vh.build_vae(2, seed=0)
    vh.load_weights(fresh, path)
    z = RNG.normal(size=(4, 2)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(decoder(z)),
        keras.ops.convert_to_numpy(fresh_decoder(z)),
    )
    bigger, _, _ = vh.build_vae(8)
    with pytest.raises(ValueError, match="does not hold weights for this model"):
        vh.load_weights(bigger, path)
    with pytest.raises(FileNotFoundError):
        vh.load_weights(bigger, tmp_path / "none.weights.h5")


def test_whole_model_saves_and_reloads_as_keras_file(tmp_path):
    vae, _, _ = vh.build_vae(2, kl_weight=0.5, seed=4)
    path = tmp_path / "vae.keras"
    vae.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("vae_loss").get_config()["kl_weight"] == 0.5
    assert reloaded.get_layer("sampling").get_config()["seed"] == 4
    x = RNG.random((2, 28, 28, 1)).astype("float32")
    z_mean, _ = reloaded.get_layer("encoder")(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(z_mean),
        keras.ops.convert_to_numpy(vae.get_layer("encoder")(x)[0]),
        rtol=1e-6,
    )


def test_learning_rate_warms_up_then_decays_to_zero():
    vae, _, _ = vh.build_vae(2)
    vh.compile_vae(vae, 1e-3, decay_steps=100, warmup_steps=10, jit_compile=False)
    schedule = vae.optimizer._learning_rate  # the schedule object Adam was given
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0.0
    assert rates[1] == pytest.approx(5e-4)
    assert rates[2] == pytest.approx(1e-3)
    assert rates[3] == pytest.approx(5e-4, rel=1e-3)  # half-way down the cosine
    assert rates[4] == pytest.approx(0.0, abs=1e-9)


def test_image_batches_visit_every_image_once_per_epoch_in_a_seeded_order():
    x = np.arange(10, dtype="float32").reshape(10, 1, 1, 1) * np.ones((1, 28, 28, 1))
    batches = vh.image_batches(x, batch_size=4, shuffle_seed=3)

    def epoch(dataset):
        return [int(b[0, 0, 0]) for batch in dataset for b in batch.numpy()]

    first, second = epoch(batches), epoch(batches)
    assert sorted(first) == sorted(second) == list(range(10))  # a permutation
    assert first != second  # reshuffled each epoch
    again = vh.image_batches(x, batch_size=4, shuffle_seed=3)
    assert epoch(again) == first  # the same seed, the same order
    assert [len(b) for b in batches] == [4, 4, 2]
    unseeded = vh.image_batches(x, batch_size=4)
    assert epoch(unseeded) == list(range(10))  # no seed: in order, unshuffled
    assert batches.options().autotune.enabled is False


def test_loss_from_logits_is_exact_where_probabilities_clip():
    """A pixel that is 1 but decoded with logit -30: 30 nats, not the clip's 16.1."""
    x = np.ones((1, 28, 28, 1), "float32")
    logits = np.full((1, 28, 28, 1), 30.0, "float32")
    logits[0, 0, 0, 0] = -30.0
    exact = float(
        keras.ops.convert_to_numpy(vh.reconstruction_loss(x, logits, from_logits=True))[
            0
        ]
    )
    clipped = float(
        keras.ops.convert_to_numpy(
            vh.reconstruction_loss(x, 1 / (1 + np.exp(-logits)))
        )[0]
    )
    assert exact == pytest.approx(30.0 + 783 * np.log1p(np.exp(-30.0)), rel=1e-4)
    assert clipped == pytest.approx(-np.log(1e-7), rel=1e-3)


def test_the_loss_reaches_the_gradient_of_a_confidently_wrong_pixel():
    """From logits, d loss / d logit = σ(l) - x: -1 for a pixel that is 1 at l = -30."""
    x = np.ones((1, 784), "float32")
    grad = gradient(
        lambda logits: vh.reconstruction_loss(x, logits, from_logits=True),
        np.full((1, 784), -30.0),
    )
    np.testing.assert_allclose(grad, -1.0, atol=1e-6)


def test_mixed_bfloat16_builds_trains_and_keeps_the_loss_in_float32():
    with vh.dtype_policy("bfloat16"):
        vae, encoder, _decoder = vh.build_vae(2, seed=0)
    assert encoder.layers[1].compute_dtype == "bfloat16"
    assert vh.loss_layer(vae).compute_dtype == "float32"
    vh.compile_vae(vae, 1e-3, jit_compile=False)
    x = RNG.random((64, 28, 28, 1)).astype("float32")
    losses = [float(vae.train_on_batch(x, return_dict=True)["loss"]) for _ in range(5)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    vae(x[:8])  # an eager call collects the added loss on every backend
    assert [keras.backend.standardize_dtype(loss.dtype) for loss in vae.losses] == [
        "float32"
    ]
    assert keras.config.dtype_policy().name == "float32"  # the policy is restored


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "fma"}, "float32"),
        ({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
        ({"amx_bf16", "amx_tile"}, "bfloat16"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(flags, expected):
    precision, why = vh.resolve_precision("auto", flags)
    assert precision == expected and why.startswith("auto")
    assert vh.resolve_precision("float32", flags)[0] == "float32"


def test_the_logits_as_a_depthwise_conv_are_the_convolution():
    """The bound's form of the last layer: same weights, same logits."""
    decoder = vh.build_decoder(2)
    logits = decoder.get_layer("logits")
    logits.bias.assign([0.3])  # a non-zero bias must come through too
    features = RNG.normal(size=(3, 28, 28, 32)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(vh.OneChannelConvAsDepthwise(logits)(features)),
        keras.ops.convert_to_numpy(logits(features)),
        atol=1e-5,
    )
    z = RNG.normal(size=(5, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(vh.decoder_logits_for_inference(decoder)(z)),
        keras.ops.convert_to_numpy(vh.decoder_logits(decoder)(z)),
        atol=1e-5,
    )


def test_only_a_one_channel_conv_takes_the_depthwise_form():
    assert vh.is_one_channel_conv(vh.build_decoder(2).get_layer("logits"))
    conv = keras.layers.Conv2D
    assert not vh.is_one_channel_conv(conv(2, 3, padding="same"))
    assert not vh.is_one_channel_conv(conv(1, 3, padding="valid"))
    assert not vh.is_one_channel_conv(conv(1, 3, strides=2, padding="same"))
    assert not vh.is_one_channel_conv(
        keras.layers.Conv2DTranspose(1, 3, padding="same")
    )

"""Evaluation: the importance-weighted log-likelihood and the grid's digit check."""

import numpy as np
import pytest

import vae_helpers as vh


@pytest.fixture(scope="module")
def trained_parts():
    """A VAE trained briefly in fast mode on the real data, and its test images."""
    (x_train, _), (x_test, y_test) = vh.load_mnist()
    vh.keras.utils.set_random_seed(0)
    vae, encoder, decoder = vh.build_vae(2, seed=0)
    vh.compile_vae(vae)
    vh.train_vae(vae, x_train[:2048], epochs=2, batch_size=128, verbose=0)
    return encoder, decoder, x_test[:40], y_test


def test_iw_estimate_is_at_least_the_elbo(trained_parts):
    encoder, decoder, x, _ = trained_parts
    log_likelihood = vh.importance_weighted_log_likelihood(encoder, decoder, x, k=200)
    elbo = -vh.evaluate_elbo(encoder, decoder, x, batch_size=len(x))["neg_elbo"]
    # k = 1 is a one-sample ELBO: averaged over 10 seeds, its sampling noise
    # (tens of nats an image for a briefly trained model) drops to a few nats.
    k1 = np.mean(
        [
            vh.importance_weighted_log_likelihood(encoder, decoder, x, k=1, seed=s)
            for s in range(10)
        ],
        axis=0,
    )
    assert log_likelihood.shape == (len(x),)
    assert log_likelihood.mean() >= elbo
    assert log_likelihood.mean() > k1.mean()  # more samples, tighter bound
    assert abs(k1.mean() - elbo) < 10


def test_iw_estimate_does_not_depend_on_batching(trained_parts):
    encoder, decoder, x, _ = trained_parts
    one = vh.importance_weighted_log_likelihood(
        encoder, decoder, x, k=50, max_decodes=50
    )
    many = vh.importance_weighted_log_likelihood(
        encoder, decoder, x, k=50, max_decodes=2000
    )
    np.testing.assert_allclose(one, many, rtol=1e-5)
    other_seed = vh.importance_weighted_log_likelihood(
        encoder, decoder, x, k=50, seed=1
    )
    assert not np.allclose(one, other_seed)


def reference_iw(encoder, decoder, x, k, seed=0):
    """The bound written out in float64 NumPy, one image at a time."""
    from scipy.special import logsumexp

    z_mean, z_log_var = vh.encode(encoder, x)
    logits_of = vh.decoder_logits(decoder)
    out = []
    for n in range(len(x)):
        eps = np.random.default_rng([seed, n]).standard_normal((k, z_mean.shape[1]))
        z = z_mean[n] + np.exp(0.5 * z_log_var[n]) * eps
        logits = vh.ops.convert_to_numpy(logits_of(z.astype("float32")))
        logits = logits.reshape(k, -1)
        logits = logits.astype("float64")
        pixels = x[n].reshape(-1).astype("float64")
        log_px = (pixels * logits - np.logaddexp(0, logits)).sum(-1)
        log_pz = -0.5 * (np.log(2 * np.pi) + z**2).sum(-1)
        log_q = -0.5 * (
            np.log(2 * np.pi)
            + z_log_var[n]
            + (z - z_mean[n]) ** 2 / np.exp(z_log_var[n])
        ).sum(-1)
        out.append(logsumexp(log_px + log_pz - log_q) - np.log(k))
    return np.asarray(out)


def test_compiled_iw_bound_equals_the_reference(trained_parts):
    encoder, decoder, x, _ = trained_parts
    compiled = vh.importance_weighted_log_likelihood(encoder, decoder, x[:8], k=300)
    np.testing.assert_allclose(
        compiled, reference_iw(encoder, decoder, x[:8], 300), atol=1e-2
    )


def test_iw_bound_is_exact_when_the_code_is_ignored():
    """Encoder = prior and a decoder that ignores z: every weight is p(x), for any k."""
    encoder = vh.build_encoder(2)
    for layer in encoder.layers[-2:]:  # z_mean and z_log_var heads output 0
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    decoder = vh.build_decoder(2)
    rng = np.random.default_rng(1)
    bias = rng.normal(size=1).astype("float32")
    for layer in decoder.layers:
        if layer.get_weights():
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    decoder.get_layer("logits").set_weights([np.zeros((3, 3, 32, 1), "float32"), bias])
    x = (rng.random((3, 28, 28, 1)) > 0.5).astype("float32")
    pixels = x.reshape(3, -1).astype("float64")
    exact = (pixels * bias[0] - np.logaddexp(0, bias[0])).sum(-1)
    for k in (1, 7, 100):
        bound = vh.importance_weighted_log_likelihood(encoder, decoder, x, k=k)
        np.testing.assert_allclose(bound, exact, rtol=1e-5)


def test_summarize_gives_mean_and_standard_error():
    mean, error = vh.summarize([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert error == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


@pytest.fixture(scope="module")
def classifier():
    model, accuracy = vh.load_or_train_classifier()
    assert accuracy >= 0.99
    return model


def test_classifier_finds_all_ten_digits_in_a_grid_of_real_digits(classifier):
    (_, _), (x_test, y_test) = vh.load_mnist()
    picks = np.concatenate([np.flatnonzero(y_test == d)[:23] for d in range(10)])[:225]
    grid = vh.tile_digits(x_test[picks], 15)
    check = vh.grid_digit_check(classifier, grid)
    assert check["digits_found"] == list(range(10))
    assert check["confident_share"] > 0.9
    assert np.array(check["labels"]).shape == (15, 15)


def test_classifier_finds_one_digit_in_a_grid_of_one_repeated_digit(classifier):
    (_, _), (x_test, y_test) = vh.load_mnist()
    seven = x_test[np.flatnonzero(y_test == 7)[0]]
    grid = vh.tile_digits(np.repeat(seven[None], 225, axis=0), 15)
    check = vh.grid_digit_check(classifier, grid)
    assert check["digits_found"] == [7]
    assert check["confident_share"] == 1.0


def test_decode_chunk_divides_k_and_is_at_most_the_limit():
    for k in (1, 7, 300, 1000, 1024, 997):
        chunk = vh.decode_chunk(k)
        assert k % chunk == 0 and 1 <= chunk <= 25, (k, chunk)
    assert vh.decode_chunk(1000) == 25
    assert vh.decode_chunk(997) == 1  # a prime: one code at a time, still exact


def test_iw_bound_does_not_depend_on_the_decode_chunk(trained_parts, monkeypatch):
    encoder, decoder, x, _ = trained_parts
    chunked = vh.importance_weighted_log_likelihood(encoder, decoder, x[:3], k=200)
    monkeypatch.setattr(vh, "decode_chunk", lambda k: k)  # all k codes at once
    whole = vh.importance_weighted_log_likelihood(encoder, decoder, x[:3], k=200)
    np.testing.assert_allclose(chunked, whole, atol=1e-3)

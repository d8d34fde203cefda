"""load_mnist: the good file, and every way a file can be wrong."""

import keras
import numpy as np
import pytest

import vae_helpers as vh


def test_good_file_is_scaled_and_shaped(good_npz, mnist_arrays):
    (x_train, y_train), (x_test, y_test) = vh.load_mnist(good_npz)
    assert x_train.shape == (60000, 28, 28, 1)
    assert x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.float32
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_allclose(
        x_test[..., 0], mnist_arrays["x_test"] / 255.0, atol=1e-7
    )
    np.testing.assert_array_equal(y_train, mnist_arrays["y_train"])


def test_environment_variable_is_used(good_npz, monkeypatch):
    monkeypatch.setenv(vh.MNIST_PATH_ENV, str(good_npz))
    (x_train, _), _ = vh.load_mnist()
    assert x_train.shape == (60000, 28, 28, 1)


def test_path_argument_wins_over_environment(good_npz, monkeypatch, tmp_path):
    monkeypatch.setenv(vh.MNIST_PATH_ENV, str(tmp_path / "nowhere.npz"))
    (x_train, _), _ = vh.load_mnist(good_npz)
    assert len(x_train) == 60000


def test_missing_file(tmp_path):
    with pytest.raises(vh.DataError, match="not found"):
        vh.load_mnist(tmp_path / "missing.npz")


def test_wrong_keys(write_npz):
    path = write_npz("keys.npz", drop=("y_test",))
    with pytest.raises(vh.DataError, match=r"missing keys \['y_test'\]"):
        vh.load_mnist(path)


def test_wrong_shape(write_npz):
    path = write_npz("shape.npz", x_test=np.zeros((10000, 32, 32), np.uint8))
    with pytest.raises(vh.DataError, match=r"x_test has shape \(10000, 32, 32\)"):
        vh.load_mnist(path)


def test_wrong_dtype(write_npz):
    path = write_npz("dtype.npz", x_train=np.zeros((60000, 28, 28), np.float64))
    with pytest.raises(vh.DataError, match="x_train has dtype float64"):
        vh.load_mnist(path)


def test_out_of_range_labels(write_npz):
    labels = np.full((10000,), 10, np.uint8)
    with pytest.raises(vh.DataError, match="y_test has labels above 9"):
        vh.load_mnist(write_npz("labels.npz", y_test=labels))


def test_object_array_needing_pickle_is_refused(write_npz):
    objects = np.empty((60000,), dtype=object)
    with pytest.raises(vh.DataError, match="pickle"):
        vh.load_mnist(write_npz("pickle.npz", y_train=objects))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(vh.DataError, match=r"not a readable \.npz"):
        vh.load_mnist(path)


def test_failed_download_says_how_to_work_offline(monkeypatch):
    monkeypatch.delenv(vh.MNIST_PATH_ENV, raising=False)

    def no_network():
        raise OSError("no route to host")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    with pytest.raises(vh.DataError, match=f"--data PATH or set {vh.MNIST_PATH_ENV}"):
        vh.load_mnist()


def test_fast_subset(monkeypatch):
    arrays = [np.arange(5000), np.arange(5000), np.arange(1000), np.arange(1000)]
    monkeypatch.setenv(vh.FAST_ENV, "1")
    sizes = [len(a) for a in vh.fast_subset(*arrays)]
    assert sizes == [vh.FAST_TRAIN_IMAGES] * 2 + [vh.FAST_TEST_IMAGES] * 2
    monkeypatch.setenv(vh.FAST_ENV, "0")
    assert [len(a) for a in vh.fast_subset(*arrays)] == [5000, 5000, 1000, 1000]


def test_real_mnist_matches_published_counts(real_mnist_path):
    if not real_mnist_path:
        pytest.skip("VAE_MNIST_PATH not set (CI sets it)")
    (_, y_train), (x_test, y_test) = vh.load_mnist(real_mnist_path)
    assert np.bincount(y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert np.bincount(y_train)[0] == 5923
    assert abs(x_test.mean() * 255 - 33.791) < 0.1

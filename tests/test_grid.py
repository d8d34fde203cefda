"""The grid: latent placement, tiling, decoding and the PNG on disk."""

import keras
import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

import vae_helpers as vh


def test_coordinates_are_normal_quantiles():
    g = vh.grid_coordinates(15)
    assert g.shape == (15,)
    np.testing.assert_allclose(g, norm.ppf(np.linspace(0.05, 0.95, 15)))
    np.testing.assert_allclose(g[0], -1.6448536, rtol=1e-6)
    np.testing.assert_allclose(g, -g[::-1], atol=1e-12)  # symmetric about 0


def test_cell_i_j_decodes_z_equal_g_j_g_i():
    g = vh.grid_coordinates(15)
    z = vh.grid_latents(15, 2).reshape(15, 15, 2)
    for i, j in [(0, 0), (0, 14), (3, 7), (14, 2)]:
        np.testing.assert_allclose(z[i, j], [g[j], g[i]], rtol=1e-6)


def test_extra_latent_dimensions_are_held_at_zero():
    z = vh.grid_latents(15, 5)
    assert z.shape == (225, 5)
    assert np.all(z[:, 2:] == 0)
    with pytest.raises(ValueError, match="two latent dimensions"):
        vh.grid_latents(15, 1)


def test_tiling_puts_digit_k_in_row_k_div_n_column_k_mod_n():
    n = 4
    digits = np.stack([np.full((28, 28, 1), k, "float32") for k in range(n * n)])
    image = vh.tile_digits(digits, n)
    assert image.shape == (n * 28, n * 28)
    for k in range(n * n):
        i, j = divmod(k, n)
        assert np.all(image[i * 28 : (i + 1) * 28, j * 28 : (j + 1) * 28] == k)


def test_grid_cells_undoes_tiling():
    n = 3
    digits = np.random.default_rng(0).random((n * n, 28, 28)).astype("float32")
    cells = vh.grid_cells(vh.tile_digits(digits, n), n)
    assert cells.shape == (n * n, 28, 28)
    np.testing.assert_array_equal(cells, digits)


def coordinate_decoder():
    """A fake decoder whose digit is a constant image of sigmoid(z1)."""
    z = keras.Input((2,))
    value = keras.layers.Lambda(lambda t: keras.ops.sigmoid(t[:, :1]))(z)
    image = keras.layers.Reshape((1, 1, 1))(value)
    image = keras.layers.UpSampling2D(28)(image)
    return keras.Model(z, image)


def test_decode_grid_geometry_and_placement():
    grid = vh.decode_grid(coordinate_decoder(), 15)
    assert grid.shape == (420, 420)
    g = vh.grid_coordinates(15)
    expected_row = 1 / (1 + np.exp(-np.repeat(g, 28)))  # z1 grows left to right
    np.testing.assert_allclose(grid[5], expected_row, rtol=1e-5)
    np.testing.assert_allclose(grid[:, 100], grid[0, 100], rtol=1e-6)


def test_png_is_420_square_grayscale_and_round_trips(tmp_path):
    image = np.random.default_rng(0).random((420, 420))
    path = tmp_path / "nested" / "grid.png"
    vh.save_grid_png(image, path)
    with Image.open(path) as png:
        assert png.size == (420, 420) and png.mode == "L"
        pixels = np.asarray(png) / 255.0
    np.testing.assert_allclose(pixels, image, atol=0.5 / 255 + 1e-9)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_interrupted_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    vh.write_json({"old": 1}, path)
    with pytest.raises(KeyboardInterrupt), vh.atomic_path(path) as tmp:
        with open(tmp, "w") as half:
            half.write('{"new": ')
        raise KeyboardInterrupt
    assert path.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

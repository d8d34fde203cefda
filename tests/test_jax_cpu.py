"""benchmarks/jax_cpu.py: per-convolution and per-step timings, JAX against TF."""

import math
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_backends
import jax_cpu


def test_each_convolution_of_the_model_is_timed_on_both_backends():
    rows = jax_cpu.convolution_times(batch=2, repeats=1)
    assert [r["convolution"] for r in rows] == [c[0] for c in jax_cpu.CONVOLUTIONS]
    for row in rows:
        for key in ("jax_forward_ms", "tf_forward_ms", "jax_kernel_gradient_ms"):
            assert math.isfinite(row[key]) and row[key] > 0
        assert row["gradients_jax_vs_tf"] == pytest.approx(
            row["jax_gradients_ms"] / row["tf_gradients_ms"]
        )


def test_the_timed_phase_form_is_tensorflows_transposed_convolution():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 4)).astype("float32")
    kernel = rng.standard_normal((3, 3, 6, 4)).astype("float32")  # (h, w, out, in)
    expected = tf.nn.conv2d_transpose(x, kernel, (2, 10, 10, 6), 2, "SAME").numpy()
    ours = np.asarray(jax_cpu.phase_transposed_conv(x, kernel))
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_steps_are_set_against_tensorflow_at_the_same_batch(monkeypatch):
    seconds = {("tensorflow", 32): 0.02, ("jax", 32): 0.08, ("tensorflow", 128): 0.05}
    seconds[("jax", 128)] = 0.5

    def fake_child(backend, images, batch_size, extra_env=None):
        flag_cost = 0.01 if extra_env else 0.0
        return {"seconds_per_step": seconds[backend, batch_size] + flag_cost}

    monkeypatch.setattr(bench_backends, "run_child", fake_child)
    rows = jax_cpu.step_times(64, [32, 128], ["--some_flag=true"])
    by_setting = {(r["backend"], r["batch_size"], r["xla_flags"]): r for r in rows}
    assert by_setting["jax", 32, ""]["vs_tensorflow"] == pytest.approx(4.0)
    assert by_setting["jax", 128, ""]["vs_tensorflow"] == pytest.approx(10.0)
    assert by_setting["jax", 32, "--some_flag=true"]["vs_tensorflow"] == pytest.approx(
        4.5
    )
    assert by_setting["tensorflow", 128, ""]["ms_per_image"] == pytest.approx(
        50.0 / 128
    )
    table = jax_cpu.markdown(
        {
            "date": "d",
            "machine": "m",
            "versions": "v",
            "batch": 2,
            "convolutions": jax_cpu.convolution_times(batch=2, repeats=1),
            "steps": rows,
        }
    )
    assert table.count("\n| jax |") == 3 and "| --some_flag=true |" in table
    assert all(c[0] in table for c in jax_cpu.CONVOLUTIONS)

"""Seeded factor initialisation: values depend on the seed and the shape only."""

from __future__ import annotations

import numpy as np
import pytest

import mfrec._random as R


@pytest.mark.parametrize("rows, cols", [(1, 1), (7, 3), (5000, 64), (3000, 700)])
def test_normal_matrix_thread_independent_and_float32_equals_float64(monkeypatch, rows, cols):
    monkeypatch.setattr(R, "NORMAL_BLOCK", 4096)  # several blocks even for small shapes (and a short last one)
    one = R.normal_matrix(R.rng(7), rows, cols, 0.5, np.float32, threads=1)
    two = R.normal_matrix(R.rng(7), rows, cols, 0.5, np.float32, threads=2)
    wide = R.normal_matrix(R.rng(7), rows, cols, 0.5, np.float64, threads=3)
    assert one.shape == (rows, cols) and one.dtype == np.float32 and one.flags.c_contiguous
    assert wide.dtype == np.float64 and wide.flags.c_contiguous
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one.astype(np.float64), wide)
    assert not np.array_equal(one, R.normal_matrix(R.rng(8), rows, cols, 0.5, np.float32))


def test_normal_matrix_is_normal_with_the_given_scale_in_every_block(monkeypatch):
    monkeypatch.setattr(R, "NORMAL_BLOCK", 10_000)
    a = R.normal_matrix(R.rng(0), 4000, 50, 0.01, np.float64, threads=2).ravel()
    assert abs(a.mean()) < 5 * 0.01 / np.sqrt(a.size)
    assert a.std() == pytest.approx(0.01, rel=0.01)
    blocks = a.reshape(-1, 10_000)  # 200 rows of 50 per block: no block left unfilled or repeated
    assert np.all(blocks.std(axis=1) > 0.009)
    assert len({b[:5].tobytes() for b in blocks}) == len(blocks)


def test_successive_matrices_from_one_generator_differ():
    g = R.rng(3)
    a = R.normal_matrix(g, 10, 4, 1.0, np.float32)
    b = R.normal_matrix(g, 10, 4, 1.0, np.float32)
    assert not np.array_equal(a, b)


def test_uniform_matrix_is_uniform_on_zero_to_scale_and_thread_independent(monkeypatch):
    monkeypatch.setattr(R, "NORMAL_BLOCK", 1000)  # several blocks
    a = R.uniform_matrix(R.rng(3), 500, 20, 0.01, np.float64, threads=1)
    b = R.uniform_matrix(R.rng(3), 500, 20, 0.01, np.float32, threads=3)
    np.testing.assert_array_equal(a, b.astype(np.float64))
    assert a.min() >= 0.0 and a.max() < 0.01
    assert abs(a.mean() - 0.005) < 2e-4 and abs(a.std() - 0.01 / np.sqrt(12)) < 2e-4

"""Factor matrices on 64-byte cache lines (mfrec._aligned): the helpers, and the fits that allocate with them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import mfrec
from mfrec import _aligned
from mfrec._random import BlockDraws, rng, uniform_matrix
from mfrec.models.training import all_finite


def on_a_line(a: np.ndarray) -> bool:
    return a.flags.c_contiguous and a.ctypes.data % 64 == 0


@given(rows=st.integers(1, 300), cols=st.integers(1, 70), dtype=st.sampled_from([np.float32, np.float64, np.int32]))
@settings(max_examples=60, deadline=None)
def test_empty_zeros_and_copies_start_a_line(rows, cols, dtype):
    a = _aligned.empty((rows, cols), dtype)
    assert a.shape == (rows, cols) and a.dtype == dtype and on_a_line(a) and a.flags.writeable
    z = _aligned.zeros((rows, cols), dtype)
    assert on_a_line(z) and not z.any()
    src = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)[:, ::-1]  # strided, not C-contiguous
    c = _aligned.aligned(src, dtype)
    assert on_a_line(c) and c.dtype == dtype
    np.testing.assert_array_equal(c, src.astype(dtype))


def test_aligned_returns_an_aligned_array_itself_and_copies_otherwise():
    a = _aligned.empty((100, 64), np.float32)
    assert _aligned.aligned(a) is a
    off = np.empty(100 * 64 * 4 + 64, np.uint8)
    at = (-off.ctypes.data) % 64 + 16
    b = off[at:at + 100 * 64 * 4].view(np.float32).reshape(100, 64)
    b[...] = 1.5
    c = _aligned.aligned(b)
    assert c is not b and on_a_line(c) and (c == 1.5).all()


def test_one_dimensional_shapes():
    assert _aligned.empty(7, np.float32).shape == (7,)
    assert on_a_line(_aligned.zeros(1000, np.float64))


def test_normal_draws_the_same_values_as_one_numpy_draw_and_leaves_the_generator_where_it_would():
    for piece in (1, 999, 1 << 16):
        g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
        x = _aligned.normal(g1, 0.1, (1000, 70), np.float32, piece=piece)
        y = g2.normal(0.0, 0.1, size=(1000, 70)).astype(np.float32)
        assert on_a_line(x)
        np.testing.assert_array_equal(x, y)
        assert g1.random() == g2.random()


def test_concatenate_is_numpy_concatenate_on_a_line():
    parts = [np.full((n, 5), n, np.float32) for n in (3, 0, 7)]
    out = _aligned.concatenate(parts)
    assert on_a_line(out)
    np.testing.assert_array_equal(out, np.concatenate(parts))


def test_block_draws_start_a_line_in_both_dtypes():
    for dtype in (np.float32, np.float64):
        draws = BlockDraws(rng(0), 5000, 64, 0.01, dtype, "random")
        assert on_a_line(draws.full(2)) and on_a_line(draws.rows(10, 4000))
    assert on_a_line(uniform_matrix(rng(1), 3000, 48, 0.01, np.float32, 2))


@pytest.mark.parametrize("make", [
    lambda: mfrec.ImplicitALS(factors=16, iterations=2, num_threads=2),
    lambda: mfrec.ImplicitALS(factors=16, iterations=2, solver="cholesky", num_threads=2),
    lambda: mfrec.ExplicitALS(factors=16, iterations=2, num_threads=2),
    lambda: mfrec.SGDFactorization(factors=16, epochs=2),
    lambda: mfrec.SGDFactorization(factors=16, epochs=2, implicit_feedback=True),
])
def test_fitted_factor_matrices_start_a_line(make):
    m = sp.random(300, 120, density=0.05, random_state=0, format="csr", dtype=np.float32)
    m.data = np.ceil(m.data * 5)
    model = make().fit(mfrec.Interactions.from_matrix(m))
    assert on_a_line(model.item_factors_) and on_a_line(model.user_factors_)


def test_all_finite_finds_every_non_finite_value():
    n = 3 * 2**18 + 6
    for dt in (np.float32, np.float64):
        a = np.zeros(n, dt)
        assert all_finite(a) and all_finite(a.reshape(-1, 6)) and all_finite(np.zeros((0, 4), dt))
        assert all_finite(np.full(8, np.finfo(dt).max)) and all_finite(np.array([np.finfo(dt).min, 0], dt))
        for pos in (0, 2**18 - 1, 2**18, n - 1):
            for bad in (np.nan, np.inf, -np.inf):
                b = a.copy()
                b[pos] = bad
                assert not all_finite(b) and not all_finite(b.reshape(-1, 6))
        b = a.copy()
        b[[3, 9]] = np.inf, -np.inf
        assert not all_finite(b)


def test_all_finite_allocates_nothing_large():
    import tracemalloc

    a = np.zeros((200_000, 16), np.float32)
    tracemalloc.start()
    all_finite(a)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 1024

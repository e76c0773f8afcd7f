"""The item side in slices of columns (mfrec.kernels.slices, ALSPlan.slices): each slice equals the matching rows
of scipy's transpose, a sliced fit equals the whole-side fit, and it never holds the whole transposed copy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import mfrec
from mfrec.kernels.slices import ColumnSlices, column_counts, slice_bounds, transpose_columns
from mfrec.models import training


def _csr(seed: int, m: int, n: int, density: float) -> sp.csr_matrix:
    a = sp.random(m, n, density=density, format="csr", random_state=seed, dtype=np.float32)
    a.data = np.random.default_rng(seed).integers(1, 6, a.nnz).astype(np.float32)
    a.sort_indices()
    return a


def _glued(slices) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The slices of one pass put back together as one transposed CSR (copies: a slice's arrays are reused)."""
    indptr, indices, values, offset = [np.zeros(1, dtype=np.int64)], [], [], 0
    for _, _, ip, ix, vals in slices:
        indptr.append(ip[1:] + offset)
        indices.append(ix.copy())
        values.append([v.copy() for v in vals])
        offset += len(ix)
    cols = [np.concatenate([v[k] for v in values]) for k in range(len(values[0]))] if values else []
    return np.concatenate(indptr), np.concatenate(indices), cols


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(1, 30), density=st.floats(0.0, 0.6), seed=st.integers(0, 10_000),
       n_slices=st.integers(1, 12), n_parts=st.integers(1, 5), n_values=st.integers(0, 2),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_slices_put_together_are_scipys_transpose(m, n, density, seed, n_slices, n_parts, n_values, dtype):
    a = _csr(seed, m, n, density)
    values = [a.data.astype(dtype), (a.data * 7 + 1).astype(dtype)][:n_values]
    slicer = ColumnSlices(a.indptr, a.indices, n, n_slices, n_parts=n_parts)
    assert slicer.bounds[0] == 0 and slicer.bounds[-1] == n and np.all(np.diff(slicer.bounds) > 0)
    indptr, indices, cols = _glued(slicer.passes(values))
    t = a.T.tocsr()
    t.sort_indices()
    np.testing.assert_array_equal(indptr, t.indptr)
    np.testing.assert_array_equal(indices, t.indices)
    for v, col in zip(values, cols):
        ref = sp.csr_matrix((v, a.indices, a.indptr), shape=a.shape).T.tocsr()
        assert col.dtype == dtype
        np.testing.assert_array_equal(col, ref.data)
    # a second pass starts afresh and gives the same slices
    again = _glued(slicer.passes(values))
    np.testing.assert_array_equal(again[1], indices)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 30), n=st.integers(1, 20), density=st.floats(0.0, 0.7), seed=st.integers(0, 1000))
def test_column_counts_are_bincounts(m, n, density, seed):
    a = _csr(seed, m, n, density)
    counts = column_counts(a.indptr, a.indices, n)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, np.bincount(a.indices, minlength=n))


def test_column_counts_refuse_a_column_out_of_range():
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        column_counts(np.array([0, 2]), np.array([0, 3], dtype=np.int32), 3)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 50), min_size=1, max_size=60), n_slices=st.integers(1, 20),
       max_cols=st.one_of(st.none(), st.integers(1, 10)))
def test_slice_bounds_cover_every_column_once_within_the_width(counts, n_slices, max_cols):
    bounds = slice_bounds(np.array(counts), n_slices, max_cols)
    assert bounds[0] == 0 and bounds[-1] == len(counts) and np.all(np.diff(bounds) > 0)
    if max_cols is not None:
        assert np.diff(bounds).max() <= max_cols
    else:
        assert len(bounds) - 1 <= max(1, n_slices)


def test_slices_are_balanced_by_entries():
    counts = np.full(1000, 10)
    bounds = slice_bounds(counts, 4)
    sizes = np.add.reduceat(counts, bounds[:-1])
    assert len(sizes) == 4 and sizes.max() - sizes.min() <= 10


def test_a_column_longer_than_a_slice_makes_fewer_longer_slices():
    np.testing.assert_array_equal(slice_bounds(np.array([1, 100, 1, 1]), 4), [0, 2, 4])


def test_slices_out_of_order_are_refused_before_anything_is_written():
    a = _csr(0, 30, 10, 0.4)
    taken = np.zeros(a.shape[0], dtype=np.int32)
    for lo, hi in ((0, 5), (5, 10)):
        transpose_columns(a.indptr, a.indices, lo, hi, taken, int(np.sum((a.indices >= lo) & (a.indices < hi))))
    np.testing.assert_array_equal(taken, np.diff(a.indptr))
    with pytest.raises(ValueError, match="do not hold"):  # columns 0:5 are behind every row's taken entries now
        transpose_columns(a.indptr, a.indices, 0, 5, taken, int(np.sum(a.indices < 5)))
    np.testing.assert_array_equal(taken, np.diff(a.indptr))
    fresh = np.zeros(a.shape[0], dtype=np.int32)
    with pytest.raises(ValueError, match="do not hold"):  # columns 5:10 with nothing taken: 0..4 met first
        transpose_columns(a.indptr, a.indices, 5, 10, fresh, int(np.sum(a.indices >= 5)))


@pytest.mark.parametrize("n_parts", [1, 3])
def test_entries_that_disagree_with_given_counts_never_write_outside(n_parts):
    a = _csr(2, 50, 12, 0.4)
    slicer = ColumnSlices(a.indptr, a.indices, 12, 3, n_parts=n_parts)
    lo, hi = int(slicer.bounds[1]), int(slicer.bounds[2])
    fresh = np.zeros(a.shape[0], dtype=np.int32)  # not moved past the first slice: its columns come first
    with pytest.raises(ValueError, match="do not hold"):
        transpose_columns(a.indptr, a.indices, lo, hi, fresh, slicer.entries(1), [a.data], n_parts=n_parts,
                          part_counts=slicer.part_counts)
    unsorted = a.indices.copy()
    for u in range(a.shape[0]):  # columns decreasing within each row
        unsorted[a.indptr[u]:a.indptr[u + 1]] = unsorted[a.indptr[u]:a.indptr[u + 1]][::-1]
    with pytest.raises(ValueError, match="do not hold"):
        for _ in ColumnSlices(a.indptr, unsorted, 12, 3, n_parts=n_parts).passes([a.data]):
            pass


def test_bad_arguments_get_clear_errors():
    a = _csr(1, 20, 8, 0.5)
    taken = np.zeros(a.shape[0], dtype=np.int32)
    with pytest.raises(TypeError, match="one dtype"):
        transpose_columns(a.indptr, a.indices, 0, 8, taken, a.nnz, [a.data, a.data.astype(np.float64)])
    with pytest.raises(ValueError, match="one count per row"):
        transpose_columns(a.indptr, a.indices, 0, 8, taken[:-1], a.nnz)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        ColumnSlices(a.indptr, a.indices, 4, 2)


def test_slice_count_keeps_a_slice_within_its_share_of_data_and_factors(monkeypatch):
    assert training.slice_count(training.SLICE_ABOVE, 4, 10**9) is None  # small sides are built whole
    nnz = 10_000_000
    k = training.slice_count(nnz, 4, 140 * 2**20)
    assert 2 <= k <= training.MAX_SLICES
    assert nnz * 4 / k <= training.SLICE_SHARE * 140 * 2**20 * 1.01
    assert training.slice_count(nnz, 4, 10**12) == 2  # at least two: otherwise the whole side is better
    assert training.slice_count(nnz, 400, 10) == training.MAX_SLICES


@pytest.fixture
def sliced(monkeypatch):
    """Fits on small data take the sliced item side, in about seven slices."""
    def force(on: bool) -> None:
        monkeypatch.setattr(training, "SLICE_ABOVE", 1000 if on else 1 << 62)
        monkeypatch.setattr(training, "MIN_SLICE", 100)
        monkeypatch.setattr(training, "SLICE_SHARE", 0.01)
        monkeypatch.setattr(training, "MAX_SLICES", 7)
    return force


def _fit_twice(force, make):
    out = []
    for on in (False, True):
        force(on)
        out.append(make())
    return out


@pytest.mark.parametrize("confidence", ["linear", "log", "given"])
def test_sliced_cholesky_fit_equals_the_whole_side_fit_bit_for_bit(sliced, confidence):
    a = _csr(3, 400, 120, 0.08)
    whole, part = _fit_twice(sliced, lambda: mfrec.ImplicitALS(
        factors=8, iterations=3, solver="cholesky", confidence=confidence, seed=2).fit(a))
    np.testing.assert_array_equal(part.item_factors_, whole.item_factors_)
    np.testing.assert_array_equal(part.user_factors_, whole.user_factors_)
    assert part.history_[-1]["loss"] == pytest.approx(whole.history_[-1]["loss"], rel=1e-12)


def test_sliced_fit_carries_given_preferences(sliced):
    a = _csr(4, 300, 90, 0.1)
    inter = mfrec.Interactions.from_matrix(a)
    pref = (np.random.default_rng(0).random(inter.nnz) < 0.7).astype(np.float32)
    fb = mfrec.ImplicitFeedback(inter, pref, unobserved_confidence=0.5)
    whole, part = _fit_twice(sliced, lambda: mfrec.ImplicitALS(factors=6, iterations=2, solver="cholesky",
                                                               seed=1).fit(fb))
    np.testing.assert_array_equal(part.item_factors_, whole.item_factors_)


def test_sliced_cg_fit_equals_the_whole_side_fit_to_rounding(sliced):
    # (four CG rows advance in lock-step: which rows share a group changes with the slices, and with it the
    # rounding of the dense product)
    a = _csr(5, 500, 150, 0.08)
    whole, part = _fit_twice(sliced, lambda: mfrec.ImplicitALS(factors=16, iterations=3, seed=3).fit(a))
    np.testing.assert_allclose(part.item_factors_, whole.item_factors_, rtol=1e-3, atol=1e-4)
    assert part.history_[-1]["loss"] == pytest.approx(whole.history_[-1]["loss"], rel=1e-5)


def test_sliced_explicit_fit_equals_the_whole_side_fit_bit_for_bit(sliced):
    a = _csr(6, 600, 200, 0.05)
    whole, part = _fit_twice(sliced, lambda: mfrec.ExplicitALS(factors=8, iterations=3, seed=4).fit(a))
    np.testing.assert_array_equal(part.item_factors_, whole.item_factors_)
    np.testing.assert_array_equal(part.item_bias_, whole.item_bias_)
    # the loss is summed over the slices (the item half-step computes it): the same to rounding
    np.testing.assert_allclose([h["loss"] for h in part.history_], [h["loss"] for h in whole.history_], rtol=1e-12)


def test_the_gd_solver_keeps_its_side_whole(sliced):
    from mfrec.models.implicit import _ImplicitPlan

    sliced(True)
    inter = mfrec.Interactions.from_matrix(_csr(7, 200, 50, 0.2))
    assert _ImplicitPlan(mfrec.ImplicitALS(factors=4, solver="cg"), inter, None, False).sliced("item")
    gd = _ImplicitPlan(mfrec.ImplicitALS(factors=4, solver="gd"), inter, None, False)
    assert not gd.sliced("item") and not gd.sliced("user")


def test_a_sliced_fit_never_holds_the_whole_transposed_side(sliced):
    a = _csr(8, 20_000, 2_000, 0.03)  # 1.2M entries, values 1-5
    inter = mfrec.Interactions.from_matrix(a)
    transposed = a.nnz * 8  # the pattern and the values the confidences are read from: 9.6 MB
    peaks = []
    for on in (False, True):
        sliced(on)
        model = mfrec.ImplicitALS(factors=8, iterations=1, seed=0, num_threads=1)
        tracemalloc.start()
        model.fit(inter)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    factors = (a.shape[0] + a.shape[1]) * 8 * 4
    assert peaks[0] - factors > transposed  # the whole side: its transposed copy at least
    assert peaks[1] - factors < transposed / 3, (peaks, factors, transposed)  # a seventh and a count per row


@pytest.fixture(scope="module")
def power_law_2m():
    """A 60k x 8k matrix of 2.3M entries with power-law item popularity (the benchmarks' shape in small): large
    enough for the item side to be sliced at the default thresholds."""
    rng = np.random.default_rng(0)
    n_users, n_items, nnz = 60_000, 8_000, 2_400_000
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cols = rng.choice(n_items, size=nnz, p=pop / pop.sum()).astype(np.int32)
    rows = rng.integers(0, n_users, nnz).astype(np.int32)
    m = sp.csr_matrix((np.ones(nnz, np.float32), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1
    assert m.nnz > training.SLICE_ABOVE
    return m


@pytest.mark.parametrize("case", ["implicit cg", "implicit cholesky", "implicit cg, values 1-5", "explicit"])
def test_an_als_fit_peaks_within_a_tenth_above_data_and_factors(power_law_2m, case):
    """Issue 19's memory bound, by tracemalloc, at d = 64 (factors about as large as the data, as in the
    benchmarks): every array the fit allocates, the factors included, stays within 0.1x (data + factors) of the
    factors. What is above them: a slice of the transposed item side, the count of entries taken per row, the
    row lists (int32)."""
    m = power_law_2m.copy()
    if "values" in case or case == "explicit":
        m.data = (1 + np.arange(m.nnz) % 5).astype(np.float32)
    d = 64
    if case == "explicit":
        inter = mfrec.Interactions(m)
        model = mfrec.ExplicitALS(factors=d, iterations=1, biases=False, calculate_training_loss=False)
    else:
        inter = mfrec.Interactions.from_matrix(m)
        model = mfrec.ImplicitALS(factors=d, iterations=1, solver=case.split()[1].strip(","),
                                  calculate_training_loss=False)
    model.fit(type(inter).from_matrix(m[:3000]) if case != "explicit" else type(inter)(m[:3000]))  # lazy imports
    tracemalloc.start()
    model.fit(inter)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    data = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    factors = (m.shape[0] + m.shape[1]) * d * 4
    assert (data + peak) / (data + factors) <= 1.1, (peak, factors, data)

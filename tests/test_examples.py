"""The worked example of the course notes (/work/shared/seed-example.md) as data."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import mfrec.data.examples as examples_module
from mfrec.data.examples import seed_example
from mfrec.data.feedback import (
    ImplicitFeedback,
    PseudoRatingRule,
    events_to_explicit,
    events_to_implicit,
    explicit_to_implicit,
)
from mfrec.exceptions import InvalidParameterError

# The tables as printed in the notes, typed in again here (not imported from the module).
UVT_PRINTED = [
    [1.0, 2.3, 1.9, 2.3, 1.9, 3.2],
    [0.8, 2.5, 2.3, 2.5, 1.7, 4.0],
    [0.6, 1.6, 1.4, 1.6, 1.2, 2.4],
    [0.3, 1.9, 2.0, 1.9, 0.9, 3.6],
]
VT_PRINTED = [[1, 10, 11, 10, 4, 20], [1, -1, -2, -1, 1, -4]]
P_PRINTED = [[1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1]]
C_PRINTED = [
    [0.85, 0, 0, 0.34, 0, 0.98],
    [0, 0.37, 0.10, 0, 0.63, 0.01],
    [0.45, 0.42, 0.43, 0, 0, 0.23],
    [0, 0, 0.26, 0, 0, 0.88],
]
# R with "?" as None, 1-based (user, item) -> rating
KNOWN = {
    (1, 1): 1, (1, 4): 2, (1, 6): 1,
    (2, 2): 2, (2, 3): 3, (2, 5): 2, (2, 6): 1,
    (3, 1): 1, (3, 2): 5, (3, 3): 5, (3, 6): 5,
    (4, 3): 2, (4, 6): 3,
}


@pytest.fixture(scope="module")
def ex():
    return seed_example()


def test_docstring_examples_run():
    result = doctest.testmod(examples_module)
    assert result.attempted >= 2 and result.failed == 0


def test_shapes_and_factors(ex):
    assert ex.R.shape == ex.UVt.shape == ex.P.shape == ex.C.shape == (4, 6)
    assert ex.U.shape == (4, 2) and ex.V.shape == (6, 2)
    assert ex.U.tolist() == [[0.3, 0.7], [0.3, 0.5], [0.2, 0.4], [0.2, 0.1]]
    assert ex.V.T.tolist() == VT_PRINTED


def test_uvt_is_the_exact_product_and_matches_the_printed_table(ex):
    # independent product, entry by entry
    loops = [[sum(ex.U[i, k] * VT_PRINTED[k][j] for k in range(2)) for j in range(6)] for i in range(4)]
    np.testing.assert_allclose(ex.UVt, loops, rtol=0, atol=1e-12)
    # to the printed rounding (one decimal) ...
    assert (np.round(ex.UVt, 1) == np.array(UVT_PRINTED)).all()
    # ... and in fact exactly (the notes say "exact products")
    np.testing.assert_allclose(ex.UVt, UVT_PRINTED, rtol=0, atol=1e-12)


def test_prediction_user3_item4(ex):
    u, i = ex.ratings.user_index(3), ex.ratings.item_index(4)
    assert (u, i) == (2, 3)
    assert np.isnan(ex.R[u, i])
    assert ex.UVt[u, i] == pytest.approx(1.6)


def test_ratings_hold_the_known_entries_with_one_based_ids(ex):
    assert list(ex.ratings.user_ids) == [1, 2, 3, 4] and list(ex.ratings.item_ids) == [1, 2, 3, 4, 5, 6]
    assert ex.user_ids == (1, 2, 3, 4) and ex.item_ids == (1, 2, 3, 4, 5, 6)
    frame = ex.ratings.to_frame()
    assert {(u, i): v for u, i, v in frame.itertuples(index=False)} == KNOWN
    assert ex.ratings.nnz == 13
    known = np.zeros((4, 6), dtype=bool)
    for (u, i), r in KNOWN.items():
        known[u - 1, i - 1] = True
        assert ex.R[u - 1, i - 1] == r
    assert (ex.known == known).all() and np.isnan(ex.R[~known]).all()


def test_implicit_is_p_and_c_as_given(ex):
    assert ex.P.tolist() == P_PRINTED and ex.C.tolist() == C_PRINTED
    assert isinstance(ex.implicit, ImplicitFeedback)
    assert ex.implicit.unobserved_confidence == 0.0
    assert list(ex.implicit.user_ids) == [1, 2, 3, 4]
    P, C = ex.implicit.dense()
    assert P.tolist() == P_PRINTED
    np.testing.assert_allclose(C, C_PRINTED, rtol=1e-6)
    # C is zero exactly where P is zero: P is "R is known"
    assert ((np.array(C_PRINTED) > 0) == (np.array(P_PRINTED) == 1)).all()
    assert (ex.P == ex.known).all()


def test_arrays_are_read_only_and_fresh(ex):
    with pytest.raises(ValueError):
        ex.R[0, 0] = 3.0
    with pytest.raises(ValueError):
        ex.UVt[0, 0] = 3.0
    other = seed_example()
    assert other is not ex and other.ratings is not ex.ratings


# ---------------------------------------------------------------------- every conversion reproduces P and C
def test_explicit_to_implicit_reproduces_p(ex):
    for threshold in (None, 1.0):
        fb = explicit_to_implicit(ex.ratings, threshold=threshold, unobserved_confidence=0.0)
        P, C = fb.dense()
        assert P.tolist() == P_PRINTED
        np.testing.assert_allclose(C, np.where(ex.known, 1 + np.nan_to_num(ex.R), 0.0))  # c = 1 + r
    # a threshold above 1 no longer reproduces it: the three 1-star ratings drop out
    assert explicit_to_implicit(ex.ratings, threshold=2.0).nnz == 13 - 4


def test_explicit_to_implicit_with_given_confidence_reproduces_p_and_c(ex):
    rows, cols, _ = ex.ratings.coo()
    given = ex.ratings.with_values(np.array(C_PRINTED)[rows, cols])
    fb = explicit_to_implicit(given, confidence="identity", unobserved_confidence=0.0)
    P, C = fb.dense()
    assert P.tolist() == P_PRINTED
    np.testing.assert_allclose(C, C_PRINTED, rtol=1e-6)


def test_events_to_implicit_reproduces_p_and_c_from_watch_percentages(ex):
    # a log where each known pair was watched C_ij of the way, written as "85%", plus a zero-weight
    # impression on an unknown pair (user 1, item 2) that must not count as a preference
    rows = [
        {"user": u, "item": i, "event": "watch", "fraction": f"{C_PRINTED[u - 1][i - 1] * 100:g}%"}
        for (u, i) in KNOWN
    ]
    log = pd.DataFrame(rows + [{"user": 1, "item": 2, "event": "impression", "fraction": None}])
    fb = events_to_implicit(
        log, fraction="fraction", weights={"watch": 1.0, "impression": 0.0}, confidence="identity",
        unobserved_confidence=0.0,
    )
    assert fb.nnz == 14  # the impression is stored, with p = 0 and c = 0
    P, C = fb.dense()
    assert P.tolist() == P_PRINTED
    np.testing.assert_allclose(C, C_PRINTED, rtol=1e-6)
    assert list(fb.user_ids) == [1, 2, 3, 4]
    # split every watch in two halves: "sum" aggregates back to the same C
    log = pd.DataFrame(rows)
    halves = pd.concat([log, log]).assign(
        fraction=lambda d: [f"{float(s[:-1]) / 2:g}%" for s in d.fraction]
    )
    P2, C2 = events_to_implicit(
        halves, fraction="fraction", weights={"watch": 1.0}, confidence="identity", unobserved_confidence=0.0
    ).dense()
    assert P2.tolist() == P_PRINTED
    np.testing.assert_allclose(C2, C_PRINTED, rtol=1e-6)


def test_events_to_explicit_reproduces_p(ex):
    log = pd.DataFrame([{"user": u, "item": i, "event": "rate"} for (u, i) in KNOWN])
    pseudo = events_to_explicit(log, rule=PseudoRatingRule(min_fraction=None, positive_events=("rate",)))
    P = pseudo.matrix.toarray()
    assert P.tolist() == P_PRINTED


def test_from_dense_reproduces_the_implicit_part(ex):
    fb = ImplicitFeedback.from_dense(P_PRINTED, C_PRINTED, unobserved_confidence=0.0)
    assert fb.nnz == 13
    np.testing.assert_array_equal(fb.confidence, ex.implicit.confidence)
    np.testing.assert_array_equal(fb.preference, ex.implicit.preference)


# ---------------------------------------------------------------------- the objectives of the notes
def test_objectives_at_zero_factors(ex):
    zeros_u, zeros_v = np.zeros((4, 2)), np.zeros((6, 2))
    assert ex.explicit_objective(zeros_u, zeros_v, 1.0) == pytest.approx(sum(r * r for r in KNOWN.values()))
    assert ex.explicit_objective(zeros_u, zeros_v, 1.0) == pytest.approx(113.0)
    assert ex.implicit_objective(zeros_u, zeros_v, 1.0) == pytest.approx(5.95)


def test_objectives_at_the_notes_factors(ex):
    lam = 0.1
    penalty = lam * (sum(x * x for row in ex.U.tolist() for x in row) + sum(x * x for row in VT_PRINTED for x in row))
    explicit = sum((r - UVT_PRINTED[u - 1][i - 1]) ** 2 for (u, i), r in KNOWN.items()) + penalty
    implicit = sum(
        C_PRINTED[a][b] * (P_PRINTED[a][b] - UVT_PRINTED[a][b]) ** 2 for a in range(4) for b in range(6)
    ) + penalty
    assert ex.explicit_objective(ex.U, ex.V, lam) == pytest.approx(explicit)
    assert ex.implicit_objective(ex.U, ex.V, lam) == pytest.approx(implicit)
    with pytest.raises(InvalidParameterError, match=r"U must be \(4, d\)"):
        ex.explicit_objective(ex.V, ex.U, lam)
    with pytest.raises(InvalidParameterError, match="regularization must be >= 0"):
        ex.implicit_objective(ex.U, ex.V, -1.0)

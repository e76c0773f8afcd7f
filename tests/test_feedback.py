"""Feedback conversion: confidence, explicit -> implicit, event logs -> implicit / explicit."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import mfrec.data.feedback as feedback_module
from mfrec import Interactions, read_interactions
from mfrec.data.feedback import (
    ImplicitFeedback,
    PseudoRatingRule,
    confidence,
    events_to_explicit,
    events_to_implicit,
    explicit_to_implicit,
    parse_fractions,
)
from mfrec.exceptions import InvalidDataError, InvalidParameterError

from conftest import REPO, shared_dataset

WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 5.0}


@pytest.fixture
def log() -> pd.DataFrame:
    """The worked example of docs/feedback.md and the module docstring."""
    return pd.DataFrame(
        {
            "user": ["ann", "ann", "ann", "ann", "bob", "bob", "bob"],
            "item": ["m1", "m1", "m1", "m2", "m1", "m3", "m3"],
            "event": ["view", "view", "purchase", "click", "view", "view", "click"],
            "fraction": [0.5, 0.25, None, None, 0.0, 0.9, None],
        }
    )


def as_dict(fb: ImplicitFeedback) -> dict[tuple, tuple[float, float]]:
    frame = fb.to_frame()
    return {(u, i): (p, c) for u, i, p, c in frame.itertuples(index=False)}


# ---------------------------------------------------------------------- the docs are tested
def test_module_docstring_examples_run():
    result = doctest.testmod(feedback_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


def test_docs_feedback_md_examples_run():
    path = REPO / "docs" / "feedback.md"
    result = doctest.testfile(
        str(path), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    assert result.attempted >= 15 and result.failed == 0


# ---------------------------------------------------------------------- confidence
def test_confidence_formulas_against_math():
    r = [0.0, 0.5, 3.0, 100.0]
    assert confidence(r, "linear", alpha=40.0).tolist() == pytest.approx([1 + 40 * x for x in r])
    assert confidence(r, "log", alpha=2.0, eps=0.1).tolist() == pytest.approx(
        [1 + 2 * math.log(1 + x / 0.1) for x in r]
    )
    assert confidence(r, "identity").tolist() == r


def test_confidence_keeps_shape_and_returns_float64():
    c = confidence(np.array([[1, 2], [3, 4]], dtype=np.int32), alpha=1.0)
    assert c.shape == (2, 2) and c.dtype == np.float64
    assert c.tolist() == [[2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "square"}, "confidence must be one of"),
        ({"alpha": -1.0}, "alpha must be >= 0"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"alpha": float("nan")}, "alpha must be finite"),
    ],
)
def test_confidence_bad_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        confidence([1.0], **kwargs)


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf])
def test_confidence_bad_values_name_position(bad):
    with pytest.raises(InvalidDataError, match="at position 2"):
        confidence([1.0, 2.0, bad])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=30),
    st.floats(0, 100),
    st.floats(1e-3, 10),
    st.sampled_from(["linear", "log"]),
)
def test_confidence_at_least_one_and_monotone(values, alpha, eps, kind):
    r = np.sort(np.array(values))
    c = confidence(r, kind, alpha=alpha, eps=eps)
    assert (c >= 1.0).all()
    assert (np.diff(c) >= -1e-9 * np.abs(c[1:])).all()


# ---------------------------------------------------------------------- ImplicitFeedback
def small_interactions() -> Interactions:
    df = pd.DataFrame({"user": ["a", "a", "b"], "item": [10, 20, 20], "value": [2.0, 0.0, 1.0]})
    return Interactions.from_frame(df, value="value")


def test_implicit_feedback_views_and_dense():
    fb = ImplicitFeedback(small_interactions(), np.array([1, 0, 1]), unobserved_confidence=1.0)
    assert fb.preference.dtype == np.float32 and fb.preference.flags.c_contiguous
    assert (fb.n_users, fb.n_items, fb.nnz, fb.shape) == (2, 2, 3, (2, 2))
    pm = fb.preference_matrix
    assert pm.nnz == 3 and (pm.indices == fb.confidence_matrix.indices).all()  # explicit zero kept
    P, C = fb.dense()
    assert P.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert C.tolist() == [[2.0, 0.0], [1.0, 1.0]]  # b/10 is unobserved: C = 1
    assert "3 stored pairs (2 preferred)" in repr(fb)
    with pytest.raises(AttributeError):
        fb.unobserved_confidence = 0.0  # frozen


def test_implicit_feedback_validation_names_the_pair():
    inter = small_interactions()
    with pytest.raises(InvalidDataError, match=r"shape \(3,\)"):
        ImplicitFeedback(inter, np.ones(2))
    with pytest.raises(InvalidDataError, match="user 'a', item 20: preference 0.5 is not 0 or 1"):
        ImplicitFeedback(inter, np.array([1.0, 0.5, 1.0]))
    with pytest.raises(InvalidDataError, match="user 'b', item 20: confidence -1 is negative"):
        ImplicitFeedback(inter.with_values(np.array([1.0, 1.0, -1.0])), np.ones(3))
    with pytest.raises(InvalidParameterError, match="unobserved_confidence must be >= 0"):
        ImplicitFeedback(inter, np.ones(3), unobserved_confidence=-1)
    with pytest.raises(InvalidParameterError, match="must be an Interactions"):
        ImplicitFeedback(sp.csr_matrix(np.eye(2)), np.ones(2))


def test_from_dense_roundtrip_and_pattern():
    P = np.array([[1, 0, 0], [0, 0, 1]])
    C = np.array([[3.0, 1.0, 0.5], [1.0, 1.0, 2.0]])
    fb = ImplicitFeedback.from_dense(P, C, unobserved_confidence=1.0, user_ids=["x", "y"], item_ids=[7, 8, 9])
    # stored: P != 0 or C != 1 -> (x,7), (x,9) with p=0 c=0.5, (y,9)
    assert as_dict(fb) == {("x", 7): (1.0, 3.0), ("x", 9): (0.0, 0.5), ("y", 9): (1.0, 2.0)}
    P2, C2 = fb.dense()
    assert (P2 == P).all() and np.allclose(C2, C)
    with pytest.raises(InvalidDataError, match=r"P\[1, 0\] = 2 is not 0 or 1"):
        ImplicitFeedback.from_dense([[1, 0], [2, 0]], np.ones((2, 2)))
    with pytest.raises(InvalidDataError, match=r"C\[0, 1\] is NaN"):
        ImplicitFeedback.from_dense(np.zeros((1, 2)), [[1.0, np.nan]])


# ---------------------------------------------------------------------- explicit -> implicit
@pytest.fixture
def stars() -> Interactions:
    df = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 3],
            "item": ["a", "b", "c", "a", "c", "b"],
            "rating": [5.0, 2.0, 4.0, 1.0, 3.5, 4.0],
            "timestamp": [10, 20, 30, 40, 50, 60],
        }
    )
    return Interactions.from_frame(df, value="rating", timestamp="timestamp")


def test_explicit_without_threshold_every_rated_pair_is_preferred(stars):
    fb = explicit_to_implicit(stars, alpha=2.0)
    assert fb.nnz == 6 and (fb.preference == 1).all()
    assert np.allclose(fb.confidence, 1 + 2 * stars.values)
    assert fb.unobserved_confidence == 1.0
    assert (fb.interactions.timestamps == stars.timestamps).all()


def test_explicit_threshold_drop_and_negative(stars):
    dropped = explicit_to_implicit(stars, threshold=4, confidence="log", alpha=1.0, eps=2.0)
    assert as_dict(dropped) == {
        (1, "a"): (1.0, pytest.approx(1 + math.log(1 + 5 / 2))),
        (1, "c"): (1.0, pytest.approx(1 + math.log(1 + 4 / 2))),
        (3, "b"): (1.0, pytest.approx(1 + math.log(1 + 4 / 2))),
    }
    assert list(dropped.user_ids) == [1, 2, 3]  # id maps unchanged
    assert dropped.interactions.timestamps.tolist() == [10, 30, 60]
    negative = explicit_to_implicit(stars, threshold=4, alpha=0.5, below_threshold="negative")
    assert negative.nnz == 6
    assert negative.to_frame()[["preference", "confidence"]].to_numpy().tolist() == [
        [1.0, 3.5], [0.0, 2.0], [1.0, 3.0], [0.0, 1.5], [0.0, 2.75], [1.0, 3.0]
    ]


def test_explicit_negative_rating_error_names_user_and_item():
    df = pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "i2"], "rating": [3.0, -2.0]})
    inter = Interactions.from_frame(df, value="rating")
    with pytest.raises(InvalidDataError, match="user 'u2', item 'i2': rating -2 is negative"):
        explicit_to_implicit(inter)
    # dropping the disliked pair first makes it fine
    assert explicit_to_implicit(inter, threshold=0).nnz == 1


def test_explicit_bad_arguments(stars):
    with pytest.raises(InvalidParameterError, match="below_threshold"):
        explicit_to_implicit(stars, threshold=3, below_threshold="keep")
    with pytest.raises(InvalidParameterError, match="threshold must be finite"):
        explicit_to_implicit(stars, threshold=float("nan"))
    with pytest.raises(InvalidParameterError, match="must be an Interactions"):
        explicit_to_implicit(pd.DataFrame())


ratings_frames = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 7), st.sampled_from([0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0])),
    min_size=1,
    max_size=40,
    unique_by=lambda t: (t[0], t[1]),
)


@settings(max_examples=50, deadline=None)
@given(ratings_frames, st.sampled_from([1.0, 3.0, 3.5, 6.0]), st.floats(0, 5))
def test_explicit_drop_is_negative_without_the_zeros(rows, threshold, alpha):
    df = pd.DataFrame(rows, columns=["user", "item", "rating"])
    inter = Interactions.from_frame(df, value="rating")
    drop = explicit_to_implicit(inter, threshold=threshold, alpha=alpha)
    neg = explicit_to_implicit(inter, threshold=threshold, alpha=alpha, below_threshold="negative")
    kept = neg.to_frame()
    kept = kept[kept.preference == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(drop.to_frame(), kept)
    # independent reference: pandas on the raw frame
    ref = df[df.rating >= threshold].sort_values(["user", "item"]).reset_index(drop=True)
    assert drop.to_frame()[["user", "item"]].to_numpy().tolist() == ref[["user", "item"]].to_numpy().tolist()
    assert np.allclose(drop.confidence, 1 + alpha * ref.rating.to_numpy(), rtol=1e-6)


# ---------------------------------------------------------------------- fractions
def test_parse_fractions_accepts_the_three_spellings():
    col = pd.Series([0.25, "25%", " 40 % ", "0.5", None, "", np.nan, "100%"], index=list("abcdefgh"))
    out = parse_fractions(col)
    assert out[[0, 1, 2, 3, 7]].tolist() == pytest.approx([0.25, 0.25, 0.4, 0.5, 1.0])
    assert np.isnan(out[[4, 5, 6]]).all()
    # a bare number above 1 makes the column's bare numbers percentages
    assert parse_fractions(pd.Series([25, 80, 1, 0])).tolist() == [0.25, 0.8, 0.01, 0.0]
    assert parse_fractions(pd.Series([0.25, 1, 0])).tolist() == [0.25, 1.0, 0.0]
    assert parse_fractions(pd.Series([0.5, 1.0]), unit="percent").tolist() == [0.005, 0.01]
    assert parse_fractions(pd.Series(["25", "80"])).tolist() == [0.25, 0.8]
    assert parse_fractions(pd.Series(pd.Categorical(["10%", "20%"]))).tolist() == [0.1, 0.2]


@pytest.mark.parametrize(
    "values, unit, match",
    [
        ([0.5, "half"], "auto", r"row 'r1', column 'watched': 'half' is not a fraction"),
        (["50%", "120%"], "auto", r"row 'r1', column 'watched': fraction '120%' is outside \[0, 1\] \(read as 1.2\)"),
        ([0.5, 1.5], "fraction", r"row 'r1'.*outside \[0, 1\]"),
        ([0.5, 250], "auto", r"row 'r1'.*read as 2.5"),
        ([0.5, -0.1], "auto", r"row 'r1'.*outside"),
        ([0.5, np.inf], "auto", r"row 'r1'.*infinite"),
    ],
)
def test_parse_fractions_errors_name_row(values, unit, match):
    with pytest.raises(InvalidDataError, match=match):
        parse_fractions(pd.Series(values, index=["r0", "r1"]), unit, name="watched")


def test_parse_fractions_rejects_booleans_and_bad_unit():
    with pytest.raises(InvalidDataError, match="booleans"):
        parse_fractions(pd.Series([True, False]))
    with pytest.raises(InvalidParameterError, match="fraction_unit"):
        parse_fractions(pd.Series([0.1]), unit="permille")


# ---------------------------------------------------------------------- events -> implicit
def test_events_worked_example_sum(log):
    fb = events_to_implicit(log, fraction="fraction", weights=WEIGHTS, alpha=2.0)
    # r = sum of w * f per pair; c = 1 + 2 r; p = r > 0
    r = {("ann", "m1"): 0.5 + 0.25 + 5, ("ann", "m2"): 2.0, ("bob", "m1"): 0.0, ("bob", "m3"): 0.9 + 2}
    assert as_dict(fb) == {k: (float(v > 0), pytest.approx(1 + 2 * v, rel=1e-6)) for k, v in r.items()}
    assert list(fb.interactions.events) == ["purchase", "click", "view", "click"]  # last event per pair


@pytest.mark.parametrize(
    "duplicates, expected_r",
    [
        ("sum", [5.75, 2.0, 0.0, 2.9]),
        ("mean", [5.75 / 3, 2.0, 0.0, 1.45]),
        ("max", [5.0, 2.0, 0.0, 2.0]),
        ("last", [5.0, 2.0, 0.0, 2.0]),  # by row order: purchase, click are the last rows
    ],
)
def test_events_duplicate_policies(log, duplicates, expected_r):
    fb = events_to_implicit(log, fraction="fraction", weights=WEIGHTS, duplicates=duplicates, confidence="identity")
    assert fb.confidence.tolist() == pytest.approx(expected_r, rel=1e-6)
    assert fb.preference.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_events_last_uses_timestamps(log):
    log = log.assign(ts=[5, 1, 2, 3, 4, 9, 6])  # ann/m1: the 0.5 view is latest; bob/m3: the 0.9 view is latest
    fb = events_to_implicit(
        log, fraction="fraction", timestamp="ts", weights=WEIGHTS, duplicates="last", confidence="identity"
    )
    assert fb.confidence.tolist() == pytest.approx([0.5, 2.0, 0.0, 0.9])
    assert fb.interactions.timestamps.tolist() == [5, 3, 4, 9]


def test_events_duplicates_error_names_rows(log):
    with pytest.raises(InvalidDataError, match=r"row 1: duplicate interaction of user 'ann' and item 'm1'"):
        events_to_implicit(log, fraction="fraction", weights=WEIGHTS, duplicates="error")


def test_events_fraction_scaling_none_and_log_confidence(log):
    fb = events_to_implicit(
        log, fraction="fraction", weights=WEIGHTS, fraction_scaling="none", confidence="log", alpha=3.0, eps=0.5
    )
    r = np.array([7.0, 2.0, 1.0, 3.0])
    assert fb.confidence.tolist() == pytest.approx((1 + 3 * np.log1p(r / 0.5)).tolist(), rel=1e-6)
    assert (fb.preference == 1).all()


def test_events_unknown_type_error_and_default_weight(log):
    log = log.copy()
    log.index = [f"e{k}" for k in range(len(log))]
    with pytest.raises(InvalidDataError) as info:
        events_to_implicit(log, fraction="fraction", weights={"view": 1.0, "purchase": 5.0})
    msg = str(info.value)
    assert "row 'e3'" in msg and "unknown event type 'click'" in msg and "'purchase', 'view'" in msg
    fb = events_to_implicit(log, weights={"view": 1.0, "purchase": 5.0}, default_weight=0.5, confidence="identity")
    assert fb.confidence.tolist() == pytest.approx([7.0, 0.5, 1.0, 1.5])


def test_events_missing_event_type(log):
    log = log.copy()
    log.loc[4, "event"] = None
    with pytest.raises(InvalidDataError, match="row 4, column 'event': event type is missing"):
        events_to_implicit(log, weights=WEIGHTS)
    with pytest.raises(InvalidDataError, match="row 4, column 'event': event type is missing"):
        events_to_implicit(log)
    fb = events_to_implicit(log, weights=WEIGHTS, default_weight=0.0, confidence="identity")
    assert as_dict(fb)[("bob", "m1")] == (0.0, 0.0)


def test_events_without_weights_or_event_column(log):
    counts = events_to_implicit(log, confidence="identity")  # every event weighs 1
    assert counts.confidence.tolist() == [3.0, 1.0, 1.0, 2.0]
    no_event = events_to_implicit(log.drop(columns="event"), event=None, default_weight=2.0, confidence="identity")
    assert no_event.confidence.tolist() == [6.0, 2.0, 2.0, 4.0]
    assert no_event.interactions.events is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"weights": {"view": -1.0}}, InvalidParameterError, r"weights\['view'\] must be >= 0"),
        ({"weights": [1, 2]}, InvalidParameterError, "weights must be a mapping"),
        ({"default_weight": -1}, InvalidParameterError, "default_weight must be >= 0"),
        ({"fraction_scaling": "sqrt"}, InvalidParameterError, "fraction_scaling"),
        ({"duplicates": "first"}, InvalidParameterError, "duplicates must be one of"),
        ({"fraction": "watched"}, InvalidDataError, "missing fraction column 'watched'; columns are: user, item"),
        ({"user": "uid"}, InvalidDataError, "missing user column 'uid'"),
    ],
)
def test_events_bad_arguments(log, kwargs, error, match):
    with pytest.raises(error, match=match):
        events_to_implicit(log, **kwargs)


def test_events_empty_and_not_a_frame(log):
    with pytest.raises(InvalidDataError, match="empty"):
        events_to_implicit(log.iloc[:0])
    with pytest.raises(InvalidDataError, match="expected a pandas DataFrame"):
        events_to_implicit(log.to_dict())
    bad = log.copy()
    bad.loc[2, "user"] = None
    with pytest.raises(InvalidDataError, match="row 2, column 'user': id is missing"):
        events_to_implicit(bad, weights=WEIGHTS)


event_rows = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 5),
        st.sampled_from(["view", "click", "purchase", "share"]),
        # values are stored as float32: fractions far below its range would round to 0 (not a real watch)
        st.one_of(st.none(), st.just(0.0), st.floats(1e-6, 1)),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=50, deadline=None)
@given(event_rows, st.sampled_from(["sum", "mean", "max"]), st.floats(0, 10), st.sampled_from(["linear", "none"]))
def test_events_match_pandas_groupby_reference(rows, duplicates, alpha, scaling):
    df = pd.DataFrame(rows, columns=["user", "item", "event", "fraction"])
    weights = {"view": 1.0, "click": 2.0, "purchase": 5.0, "share": 0.0}
    fb = events_to_implicit(
        df, fraction="fraction", weights=weights, duplicates=duplicates, alpha=alpha, fraction_scaling=scaling,
        fraction_unit="fraction",
    )
    f = df.fraction.astype(float).fillna(1.0) if scaling == "linear" else 1.0
    ref = df.assign(v=df.event.map(weights) * f).groupby(["user", "item"]).v.agg(duplicates).reset_index()
    got = fb.to_frame()
    assert got[["user", "item"]].to_numpy().tolist() == ref[["user", "item"]].to_numpy().tolist()
    assert got.preference.tolist() == (ref.v > 0).astype(float).tolist()
    np.testing.assert_allclose(fb.confidence, 1 + alpha * ref.v.to_numpy(), rtol=1e-5, atol=1e-5)


def test_events_on_synthetic_log_with_categorical_events():
    from mfrec.data.synthetic import synthetic

    ds = synthetic(n_users=40, n_items=30, seed=3)
    ev = ds.events
    fb = events_to_implicit(ev, fraction="fraction", timestamp="timestamp", weights=WEIGHTS, alpha=1.0)
    # every viewed pair appears; the ids follow the log
    assert fb.nnz == ev[ev.event == "view"].groupby(["user", "item"]).ngroups
    ref = (
        ev.assign(v=ev.event.astype(object).map(WEIGHTS) * ev.fraction.fillna(1.0))
        .groupby(["user", "item"])
        .v.sum()
    )
    np.testing.assert_allclose(fb.confidence, 1 + ref.to_numpy(), rtol=1e-5)
    assert fb.interactions.timestamps.dtype == np.int64
    pseudo = events_to_explicit(ev, fraction="fraction")
    assert set(np.unique(pseudo.values)) <= {0.0, 1.0}
    assert pseudo.nnz == fb.nnz


# ---------------------------------------------------------------------- events -> explicit
def test_events_to_explicit_default_rule(log):
    out = events_to_explicit(log, fraction="fraction")
    assert out.to_frame()[["user", "item", "value"]].to_numpy().tolist() == [
        ["ann", "m1", 1.0], ["ann", "m2", 0.0], ["bob", "m1", 0.0], ["bob", "m3", 1.0]
    ]
    # "sum" counts qualifying rows; percentages in strings work
    log2 = log.assign(fraction=["85%", "90%", None, None, "0%", "79%", None])
    out = events_to_explicit(log2, fraction="fraction", duplicates="sum")
    assert out.values.tolist() == [3.0, 0.0, 0.0, 0.0]


def test_pseudo_rating_rule_values_and_validation():
    rule = PseudoRatingRule(min_fraction=0.5, positive_events="like", positive=5.0, negative=1.0)
    assert rule.positive_events == ("like",)
    got = rule(np.array(["like", "view", "view", None], dtype=object), np.array([np.nan, 0.5, 0.49, np.nan]))
    assert got.tolist() == [5.0, 5.0, 1.0, 1.0]
    only_events = PseudoRatingRule(min_fraction=None, positive_events=["buy"])
    assert only_events(None, np.array([1.0])).tolist() == [0.0]
    with pytest.raises(InvalidParameterError, match="min_fraction must be <= 1"):
        PseudoRatingRule(min_fraction=80)
    with pytest.raises(InvalidParameterError, match="nothing is positive"):
        PseudoRatingRule(min_fraction=None, positive_events=())


def test_events_to_explicit_callable_and_errors(log):
    out = events_to_explicit(log, fraction="fraction", rule=lambda e, f: np.where(e == "click", 2.0, 1.0))
    assert out.values.tolist() == [1.0, 2.0, 1.0, 2.0]
    with pytest.raises(InvalidDataError, match=r"returned shape \(2,\)"):
        events_to_explicit(log, rule=lambda e, f: [1.0, 2.0])
    with pytest.raises(InvalidDataError, match="row 5: the rule gave a non-finite rating"):
        events_to_explicit(log, fraction="fraction", rule=lambda e, f: np.where(f == 0.9, np.nan, 1.0))
    with pytest.raises(InvalidDataError, match="did not return numbers"):
        events_to_explicit(log, rule=lambda e, f: ["x"] * len(f))
    with pytest.raises(InvalidParameterError, match="rule must be"):
        events_to_explicit(log, rule=3)
    with pytest.raises(InvalidParameterError, match="no fraction column"):
        events_to_explicit(log, rule=PseudoRatingRule(min_fraction=0.8, positive_events=()))


def test_events_to_explicit_warns_on_absent_positive_event(log):
    with pytest.warns(UserWarning, match=r"'buy' never occur in column 'event'; types present: 'click'"):
        events_to_explicit(log, fraction="fraction", rule=PseudoRatingRule(positive_events=("buy",)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events_to_explicit(log, fraction="fraction")


# ---------------------------------------------------------------------- real data
def test_lastfm_play_counts_to_implicit_log_confidence():
    path = shared_dataset("lastfm-2k") / "user_artists.dat"
    plays = read_interactions(path, user="userID", item="artistID", value="weight")
    fb = explicit_to_implicit(plays, confidence="log", alpha=1.0, eps=10.0)
    assert fb.nnz == plays.nnz > 90_000 and (fb.preference == 1).all()
    raw = pd.read_csv(path, sep="\t")
    ref = raw.sort_values(["userID", "artistID"]).weight.to_numpy(dtype=np.float64)
    np.testing.assert_allclose(fb.confidence, 1 + np.log1p(ref.astype(np.float32) / 10.0), rtol=1e-6)
    assert fb.confidence.min() >= 1.0
    # threshold on play counts: only artists played at least 100 times
    heavy = explicit_to_implicit(plays, threshold=100)
    assert heavy.nnz == int((raw.weight >= 100).sum())


@pytest.mark.slow
def test_events_to_implicit_at_scale_matches_groupby():
    g = np.random.default_rng(0)
    n = 1_000_000
    df = pd.DataFrame(
        {
            "user": g.integers(0, 50_000, n),
            "item": g.integers(0, 20_000, n),
            "event": pd.Categorical.from_codes(g.integers(0, 3, n), ["view", "click", "purchase"]),
            "fraction": np.where(g.random(n) < 0.5, g.random(n), np.nan),
        }
    )
    fb = events_to_implicit(df, fraction="fraction", weights=WEIGHTS, alpha=3.0)
    ref = (
        df.assign(v=df.event.astype(object).map(WEIGHTS) * df.fraction.fillna(1.0))
        .groupby(["user", "item"])
        .v.sum()
    )
    assert fb.nnz == len(ref)
    np.testing.assert_allclose(fb.confidence, 1 + 3.0 * ref.to_numpy(), rtol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "log", "given"])
def test_entry_confidence_in_pieces_equals_one_piece_and_names_the_first_bad_entry(kind, monkeypatch):
    """The fit's confidences are computed in float64 pieces straight into the factor dtype: the same values as
    one float64 pass cast, and an error names the first bad entry (and counts the negatives) across pieces."""
    rng = np.random.default_rng(0)
    r = (rng.random(103) * 5).astype(np.float32)
    whole = feedback_module.entry_confidence(r, kind, 0.7, 0.5, lambda pos: f"entry {pos}")
    monkeypatch.setattr(feedback_module, "CONFIDENCE_PIECE", 10)
    pieces = feedback_module.entry_confidence(r, kind, 0.7, 0.5, lambda pos: f"entry {pos}", dtype=np.float32)
    assert pieces.dtype == np.float32
    np.testing.assert_array_equal(pieces, whole.astype(np.float32))
    bad = r.copy()
    bad[[37, 55, 91]] = -1.0
    with pytest.raises(InvalidDataError, match=r"entry 37 \(3 negative entries\)"):
        feedback_module.entry_confidence(bad, kind, 0.7, 0.5, lambda pos: f"entry {pos}")
    bad[64] = np.nan  # a value that is not finite is reported first, wherever it is
    with pytest.raises(InvalidDataError, match="of entry 64 is not finite"):
        feedback_module.entry_confidence(bad, kind, 0.7, 0.5, lambda pos: f"entry {pos}")

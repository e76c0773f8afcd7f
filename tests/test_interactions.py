"""Interactions: id maps, duplicate policies, validation errors, file readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mfrec import Interactions, InvalidDataError, InvalidParameterError, UnknownIdError, read_interactions

ids = st.one_of(st.integers(-1000, 1000), st.text(min_size=1, max_size=5))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ids, ids), min_size=1, max_size=40))
def test_id_round_trip(pairs):
    df = pd.DataFrame(pairs, columns=["user", "item"]).astype(object)
    data = Interactions.from_frame(df)
    # every external id maps to an index and back
    assert data.user_ids[data.user_index(list(df["user"]))].tolist() == list(df["user"])
    assert data.item_ids[data.item_index(list(df["item"]))].tolist() == list(df["item"])
    assert data.user_index_map.is_unique and data.item_index_map.is_unique
    # each distinct pair is one entry whose value counts its rows (duplicates="sum", no value column)
    counts = df.groupby(["user", "item"], sort=False).size()
    assert data.nnz == len(counts)
    frame = data.to_frame()
    got = {(u, i): v for u, i, v in zip(frame["user"], frame["item"], frame["value"])}
    assert got == {k: float(v) for k, v in counts.items()}
    assert data.matrix.dtype == np.float32 and data.matrix.has_canonical_format


def test_integer_ids_are_sorted_and_int32_indices():
    df = pd.DataFrame({"user": [30, 10, 20], "item": ["b", "a", "c"], "r": [1.0, 2.0, 3.0]})
    data = Interactions.from_frame(df, value="r")
    assert data.user_ids.tolist() == [10, 20, 30]
    assert data.item_ids.tolist() == ["a", "b", "c"]
    assert data.matrix.indices.dtype == np.int32
    assert data.matrix.toarray().tolist() == [[2, 0, 0], [0, 0, 3], [0, 1, 0]]


@pytest.mark.parametrize(
    "policy, expected",
    [("sum", 9.0), ("mean", 3.0), ("max", 5.0), ("last", 1.0)],
)
def test_duplicate_policies(policy, expected):
    df = pd.DataFrame(
        {"user": ["u"] * 3 + ["v"], "item": ["i"] * 3 + ["i"], "r": [3.0, 5.0, 1.0, 2.0], "t": [1, 2, 3, 0]}
    )
    data = Interactions.from_frame(df, value="r", timestamp="t", duplicates=policy)
    assert data.matrix[0, 0] == expected
    assert data.matrix[1, 0] == 2.0
    assert data.timestamps.tolist() == [3, 0]  # merged entry keeps its latest time


def test_last_follows_time_not_row_order():
    df = pd.DataFrame({"user": [1, 1], "item": [1, 1], "r": [4.0, 2.0], "t": [20, 10]})
    assert Interactions.from_frame(df, value="r", timestamp="t", duplicates="last").matrix[0, 0] == 4.0


def test_duplicates_error_names_rows():
    df = pd.DataFrame({"user": [1, 2, 1], "item": [5, 5, 5]})
    with pytest.raises(InvalidDataError, match=r"row 2: duplicate interaction of user 1 and item 5 \(first at row 0\)"):
        Interactions.from_frame(df, duplicates="error")


def test_unknown_duplicate_policy():
    with pytest.raises(InvalidParameterError, match="duplicates='median'"):
        Interactions.from_frame(pd.DataFrame({"user": [1], "item": [1]}), duplicates="median")


def test_events_keep_the_last_event_of_a_pair():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 1, 1], "e": ["view", "buy", "view"], "t": [1, 2, 3]})
    data = Interactions.from_frame(df, event="e", timestamp="t")
    assert data.events.tolist() == ["buy", "view"]


@pytest.mark.parametrize(
    "frame, kwargs, message",
    [
        ({"user": [1], "item": [1]}, {"value": "rating"}, "missing value column 'rating'"),
        ({"usr": [1], "item": [1]}, {}, "missing user column 'user'"),
        ({"user": [1, None], "item": [1, 2]}, {}, r"row 1, column 'user': id is missing"),
        ({"user": [1, 2], "item": [1, np.nan]}, {}, r"row 1, column 'item': id is missing"),
        ({"user": [1, 2], "item": [1, 2], "r": [1.0, np.nan]}, {"value": "r"}, r"row 1, column 'r': value is missing"),
        ({"user": [1, 2], "item": [1, 2], "r": [np.inf, 1]}, {"value": "r"}, r"row 0, column 'r': value is infinite"),
        ({"user": [1, 2], "item": [1, 2], "r": ["1", "x"]}, {"value": "r"}, r"row 1, column 'r': value 'x' is not a number"),
        (
            {"user": [1, 2], "item": [1, 2], "r": [1, -2]},
            {"value": "r", "allow_negative": False},
            r"row 1, column 'r': negative value -2",
        ),
    ],
)
def test_validation_errors_name_row_and_column(frame, kwargs, message):
    with pytest.raises(InvalidDataError, match=message):
        Interactions.from_frame(pd.DataFrame(frame), **kwargs)


def test_empty_data():
    with pytest.raises(InvalidDataError, match="empty"):
        Interactions.from_frame(pd.DataFrame({"user": [], "item": []}))


def test_lookup_errors_are_key_errors_naming_the_id():
    data = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": ["x"]}))
    with pytest.raises(KeyError, match="unknown user id 'b'"):
        data.user_index("b")
    with pytest.raises(UnknownIdError, match=r"2 unknown item id\(s\): 'y', 'z'"):
        data.item_index(["x", "y", "z"])
    assert data.item_index(["x", "y"], missing="ignore").tolist() == [0, -1]


def test_take_keeps_id_maps_and_alignment():
    df = pd.DataFrame({"user": [1, 1, 2, 3], "item": [1, 2, 2, 3], "r": [1, 2, 3, 4], "t": [10, 20, 30, 40]})
    data = Interactions.from_frame(df, value="r", timestamp="t")
    part = data.take(np.array([3, 0]))
    assert part.shape == data.shape and part.nnz == 2
    assert part.user_ids.tolist() == data.user_ids.tolist()
    assert part.to_frame()[["user", "item", "value", "timestamp"]].values.tolist() == [[1, 1, 1, 10], [3, 3, 4, 40]]
    mask = data.values > 2
    assert data.take(mask).nnz == 2


def test_reindex_to_other_maps_drops_and_counts_unknown():
    data = Interactions.from_frame(pd.DataFrame({"user": ["a", "b", "c"], "item": [1, 2, 3], "v": [1.0, 2.0, 3.0]}), value="v")
    out, dropped = data.reindex(["c", "a"], [3, 1, 9])
    assert dropped == 1
    assert out.shape == (2, 3)
    assert out.matrix.toarray().tolist() == [[3, 0, 0], [0, 1, 0]]
    with pytest.raises(UnknownIdError, match="unknown user id 'b'"):
        data.reindex(["c", "a"], [3, 1, 9], unknown="raise")


def test_from_matrix_and_given_id_maps():
    dense = np.array([[0, 1.5], [2, 0]])
    data = Interactions.from_matrix(dense, user_ids=["x", "y"], item_ids=[7, 8])
    assert data.nnz == 2 and data.item_index(8) == 1
    fixed = Interactions.from_frame(
        pd.DataFrame({"user": ["y"], "item": [8]}), user_ids=data.user_ids, item_ids=data.item_ids
    )
    assert fixed.shape == (2, 2) and fixed.matrix[1, 1] == 1
    with pytest.raises(UnknownIdError, match="unknown item id 9"):
        Interactions.from_frame(pd.DataFrame({"user": ["y"], "item": [9]}), user_ids=["y"], item_ids=[8])
    with pytest.raises(InvalidDataError, match=r"entry \(0, 1\)"):
        Interactions.from_matrix(np.array([[0, np.nan]]))
    assert isinstance(data.matrix, sp.csr_matrix)


def test_describe():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "r": [5, 3, 5], "t": [0, 86400, 172800]})
    info = Interactions.from_frame(df, value="r", timestamp="t").describe()
    assert (info["users"], info["items"], info["interactions"]) == (2, 2, 3)
    assert info["density"] == pytest.approx(0.75)
    assert info["values"]["histogram"] == {"3": 1, "5": 2}
    assert info["per_user"]["p100"] == 2 and info["per_item"]["p0"] == 1
    assert info["time_span"]["days"] == pytest.approx(2.0)


# ------------------------------------------------------------------ files
def test_read_csv_nan_names_the_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,10,4\n2,10,\n3,11,5\n")
    with pytest.raises(InvalidDataError, match=r"ratings.csv, line 3, column 'rating': value is missing"):
        read_interactions(path)


def test_read_formats_agree(tmp_path):
    df = pd.DataFrame({"user": ["a", "b", "a"], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.5], "timestamp": [1, 2, 3]})
    df.to_csv(tmp_path / "x.csv", index=False)
    df.to_csv(tmp_path / "x.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "x.parquet")
    df.to_csv(tmp_path / "x.dat", index=False, header=False, sep="\t")
    read = [
        read_interactions(tmp_path / "x.csv"),
        read_interactions(tmp_path / "x.tsv"),
        read_interactions(tmp_path / "x.parquet"),
        read_interactions(tmp_path / "x.dat", header=False, names=["user", "item", "rating", "timestamp"]),
    ]
    for data in read:
        assert data.user_ids.tolist() == ["a", "b"]
        assert data.matrix.toarray().tolist() == read[0].matrix.toarray().tolist()
        assert data.timestamps.tolist() == [1, 3, 2]


def test_read_errors(tmp_path):
    with pytest.raises(InvalidDataError, match="no such file"):
        read_interactions(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidDataError, match="empty"):
        read_interactions(empty)
    header_only = tmp_path / "h.csv"
    header_only.write_text("user,item\n")
    with pytest.raises(InvalidDataError, match="h.csv: the data is empty|no interactions in .*h.csv"):
        read_interactions(header_only)
    nocol = tmp_path / "n.csv"
    nocol.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidDataError, match="no user column found among a, b"):
        read_interactions(nocol)
    bad_id = tmp_path / "i.tsv"
    bad_id.write_text("user\titem\n1\t2\n\t3\n")
    with pytest.raises(InvalidDataError, match=r"i.tsv, line 3, column 'user': id is missing"):
        read_interactions(bad_id)


def test_read_ml100k(shared_data_dir):
    data = read_interactions(
        shared_data_dir / "ml-100k" / "u.data", header=False, names=["user", "item", "rating", "timestamp"]
    )
    assert (data.n_users, data.n_items, data.nnz) == (943, 1682, 100000)
    assert data.values.min() == 1 and data.values.max() == 5

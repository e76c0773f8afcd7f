"""Attributes: each encoding against hand-computed matrices, alignment, transform, validation, real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_dataset
from mfrec.data.attributes import Attributes, FeatureGroup
from mfrec.data.interactions import Interactions
from mfrec.exceptions import InvalidDataError, InvalidParameterError, UnknownIdError


def dense(a: Attributes) -> np.ndarray:
    return a.matrix.toarray()


def check_canonical(a: Attributes) -> None:
    m = a.matrix
    assert isinstance(m, sp.csr_matrix)
    assert m.dtype == np.float32
    assert m.shape == (len(a.ids), len(a.feature_names))
    assert m.has_canonical_format


# ---------------------------------------------------------------------------- each kind, by hand


def test_categorical_one_hot_by_hand():
    df = pd.DataFrame(
        {"gender": ["F", "M", "F"], "occ": ["x", "y", None]}, index=pd.Index(["u1", "u2", "u3"], name="user")
    )
    a = Attributes.from_frame(df, categorical=["gender", "occ"])
    assert a.feature_names == ["gender=F", "gender=M", "occ=x", "occ=y"]
    expected = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(dense(a), expected)
    assert a.ids.tolist() == ["u1", "u2", "u3"]
    assert a.n_missing_values == {"gender": 0, "occ": 1}
    assert a.groups == (FeatureGroup("gender", "categorical", 0, 2), FeatureGroup("occ", "categorical", 2, 4))
    assert a.feature_groups == {"gender": slice(0, 2), "occ": slice(2, 4)}
    check_canonical(a)


def test_categorical_numbers_are_labelled_as_integers():
    # a float column holding integers (because of a NaN) keeps the labels '1', '2' not '1.0'
    df = pd.DataFrame({"id": [1, 2, 3], "zone": [1.0, 2.0, np.nan]})
    a = Attributes.from_frame(df, "id", categorical="zone")
    assert a.feature_names == ["zone=1", "zone=2"]
    np.testing.assert_array_equal(dense(a), [[1, 0], [0, 1], [0, 0]])
    # the same value given as an int in transform finds the same feature
    np.testing.assert_array_equal(a.transform(pd.DataFrame({"zone": [2]})).toarray(), [[0, 1]])


def test_multilabel_by_hand_strings_lists_and_separators():
    df = pd.DataFrame(
        {
            "id": [10, 20, 30, 40],
            "genres": ["Action|Comedy", "Drama", "", None],
            "tags": [["b", "a"], ("a",), None, "c ; a"],
        }
    )
    a = Attributes.from_frame(df, "id", multilabel={"genres": "|", "tags": ";"})
    assert a.feature_names == ["genres=Action", "genres=Comedy", "genres=Drama", "tags=a", "tags=b", "tags=c"]
    expected = np.array(
        [
            [1, 1, 0, 1, 1, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 1],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(dense(a), expected)
    assert a.n_missing_values == {"genres": 2, "tags": 1}
    # a list of columns means sep="|"
    b = Attributes.from_frame(df, "id", multilabel=["genres"])
    np.testing.assert_array_equal(dense(b), expected[:, :3])


def test_numeric_standardized_by_hand():
    df = pd.DataFrame({"id": ["a", "b", "c"], "age": [20, 30, 40], "const": [5.0, 5.0, 5.0]})
    a = Attributes.from_frame(df, "id", numeric=["age", "const"])
    assert a.feature_names == ["age", "const"]
    sd = math.sqrt(((20 - 30) ** 2 + 0 + (40 - 30) ** 2) / 3)  # population std
    np.testing.assert_allclose(dense(a)[:, 0], [-10 / sd, 0.0, 10 / sd], rtol=1e-6)
    np.testing.assert_array_equal(dense(a)[:, 1], [0, 0, 0])  # zero variance -> 0, no division by zero
    assert np.isfinite(a.matrix.data).all()


def test_numeric_nan_mean_flag_and_error():
    df = pd.DataFrame({"id": [1, 2, 3], "x": [10.0, np.nan, 30.0], "y": [1.0, 2.0, 3.0]})
    a = Attributes.from_frame(df, "id", numeric=["x", "y"])
    # mean 20 and std 10 from the two known values; NaN -> the mean -> 0
    np.testing.assert_allclose(dense(a)[:, 0], [-1.0, 0.0, 1.0], rtol=1e-6)
    assert a.n_missing_values["x"] == 1
    f = Attributes.from_frame(df, "id", numeric=["x", "y"], numeric_nan="flag")
    assert f.feature_names == ["x", "x:missing", "y"]  # flags only for columns that had NaNs
    np.testing.assert_array_equal(dense(f)[:, 1], [0, 1, 0])
    np.testing.assert_allclose(dense(f)[:, 0], dense(a)[:, 0])
    with pytest.raises(InvalidDataError, match=r"id 2 .*column 'x'.*missing"):
        Attributes.from_frame(df, "id", numeric="x", numeric_nan="error")


def test_numeric_non_number_names_id_and_column():
    df = pd.DataFrame({"id": ["u1", "u2", "u3"], "age": ["21", "abc", "40"]})
    with pytest.raises(InvalidDataError, match=r"id 'u2'.*column 'age'.*'abc' is not a number"):
        Attributes.from_frame(df, "id", numeric="age")
    df["age"] = [1.0, np.inf, 2.0]
    with pytest.raises(InvalidDataError, match=r"id 'u2'.*column 'age'.*infinite"):
        Attributes.from_frame(df, "id", numeric="age")
    # numbers given as strings are fine
    ok = Attributes.from_frame(pd.DataFrame({"id": [1, 2], "age": ["1", "3"]}), "id", numeric="age")
    np.testing.assert_allclose(dense(ok)[:, 0], [-1, 1])


def test_text_tfidf_by_hand():
    df = pd.DataFrame({"id": [1, 2, 3, 4], "title": ["Star Wars", "star trek", "wars", None]})
    a = Attributes.from_frame(df, "id", text="title")
    assert a.feature_names == ["title:tfidf:star", "title:tfidf:trek", "title:tfidf:wars"]
    n = 4  # documents (the missing title is the empty document)
    idf = {t: math.log((1 + n) / (1 + d)) + 1 for t, d in {"star": 2, "trek": 1, "wars": 2}.items()}
    rows = [
        [idf["star"], 0, idf["wars"]],
        [idf["star"], idf["trek"], 0],
        [0, 0, idf["wars"]],
        [0, 0, 0],
    ]
    expected = np.array([r / np.linalg.norm(r) if any(r) else r for r in np.array(rows)], dtype=np.float64)
    np.testing.assert_allclose(dense(a), expected, rtol=1e-6)
    assert a.n_missing_values == {"title": 1}
    # unseen terms are ignored by the fitted vocabulary
    got = a.transform(pd.DataFrame({"title": ["star gazer"]})).toarray()
    np.testing.assert_allclose(got, [[1, 0, 0]], rtol=1e-6)


def test_text_options():
    df = pd.DataFrame({"id": [1, 2, 3], "t": ["aa bb cc", "aa bb", "aa"]})
    # the most frequent terms are kept
    assert Attributes.from_frame(df, "id", text="t", text_max_features=2).feature_names == ["t:tfidf:aa", "t:tfidf:bb"]
    # TfidfVectorizer's default token pattern drops one-letter words: no vocabulary at all
    with pytest.raises(InvalidDataError, match="text column 't'.*no terms"):
        Attributes.from_frame(df.assign(t=["a b", "c", None]), "id", text="t")
    df2 = pd.DataFrame({"id": [1, 2, 3], "t": ["alpha beta", "alpha gamma", "alpha delta"]})
    assert Attributes.from_frame(df2, "id", text="t", min_df=2).feature_names == ["t:tfidf:alpha"]
    assert len(Attributes.from_frame(df2, "id", text="t", min_df=0.5).feature_names) == 1
    with pytest.raises(InvalidParameterError, match="min_df"):
        Attributes.from_frame(df2, "id", text="t", min_df=0)
    with pytest.raises(InvalidParameterError, match="text_max_features"):
        Attributes.from_frame(df2, "id", text="t", text_max_features=0)


def test_all_kinds_together_group_slices():
    df = pd.DataFrame(
        {"g": ["F", "M"], "genres": ["A|B", "B"], "age": [1.0, 3.0], "title": ["x men", "men in black"]},
        index=["i1", "i2"],
    )
    a = Attributes.from_frame(df, categorical="g", multilabel="genres", numeric="age", text="title")
    kinds = [(g.column, g.kind) for g in a.groups]
    assert kinds == [("g", "categorical"), ("genres", "multilabel"), ("age", "numeric"), ("title", "text")]
    assert a.groups[-1].stop == a.n_features
    for g in a.groups:
        names = a.feature_names[g.slice]
        assert all(n.startswith(g.column) for n in names)
    np.testing.assert_allclose(dense(a)[:, a.feature_groups["age"]].ravel(), [-1, 1])
    assert "2 ids x" in repr(a) and "genres: multilabel 2" in repr(a)


# ---------------------------------------------------------------------------- alignment


@pytest.fixture
def people():
    return pd.DataFrame({"uid": ["a", "b", "c", "d"], "g": ["F", "M", "F", "X"], "age": [20.0, 40.0, 30.0, 50.0]})


def test_align_to_map_missing_and_extra_kept(people):
    a = Attributes.from_frame(people, "uid", categorical="g", numeric="age", ids=["c", "zz", "a", "b"])
    assert a.ids.tolist() == ["c", "zz", "a", "b", "d"]  # the map, then the kept extra id
    assert a.missing_ids.tolist() == ["zz"] and a.extra_ids.tolist() == ["d"]
    assert a.present.tolist() == [True, False, True, True, True]
    assert a.feature_names == ["g=F", "g=M", "g=X", "age"]
    m = dense(a)
    np.testing.assert_array_equal(m[1], 0)  # the missing id's row is all zero
    np.testing.assert_array_equal(m[:, :3], [[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    ages = np.array([30.0, 20.0, 40.0, 50.0])  # rows c, a, b, d
    np.testing.assert_allclose(m[[0, 2, 3, 4], 3], (ages - ages.mean()) / ages.std(), rtol=1e-6)
    assert "1 missing, 1 extra" in repr(a)


def test_align_extra_drop_fits_on_kept_rows_only(people):
    a = Attributes.from_frame(people, "uid", categorical="g", numeric="age", ids=["a", "b", "c"], extra="drop")
    assert a.ids.tolist() == ["a", "b", "c"] and a.extra_ids.tolist() == ["d"]
    assert a.feature_names == ["g=F", "g=M", "age"]  # 'X' only belonged to the dropped row
    np.testing.assert_allclose(dense(a)[:, 2], [-np.sqrt(1.5), np.sqrt(1.5), 0], rtol=1e-6)


def test_missing_and_extra_errors_list_ids(people):
    with pytest.raises(InvalidDataError, match=r"2 id\(s\) of the map have no attribute row: 'p', 'q'"):
        Attributes.from_frame(people, "uid", categorical="g", ids=["a", "p", "q"], missing="error")
    with pytest.raises(InvalidDataError, match=r"3 attribute id\(s\) are not in the id map: 'b', 'c', 'd'"):
        Attributes.from_frame(people, "uid", categorical="g", ids=["a"], extra="error")
    ok = Attributes.from_frame(people, "uid", categorical="g", ids=["d", "c", "b", "a"], missing="error", extra="error")
    assert ok.ids.tolist() == ["d", "c", "b", "a"]


def test_no_overlap_is_an_error_naming_the_id_types():
    df = pd.DataFrame({"item": ["1", "2"], "g": ["x", "y"]})
    with pytest.raises(InvalidDataError, match=r"none of the 2 attribute ids.*'1' \(str\).*1 \(int"):
        Attributes.from_frame(df, "item", categorical="g", ids=np.array([1, 2, 3]))


def test_align_method(people):
    a = Attributes.from_frame(people, "uid", categorical="g", numeric="age")
    b = a.align(["d", "new", "a"])
    assert b.ids.tolist() == ["d", "new", "a", "b", "c"]
    assert b.missing_ids.tolist() == ["new"] and b.extra_ids.tolist() == ["b", "c"]
    full = dense(a)
    np.testing.assert_array_equal(dense(b)[[0, 2, 3, 4]], full[[3, 0, 1, 2]])  # no refit: rows unchanged
    np.testing.assert_array_equal(dense(b)[1], 0)
    c = a.align(["b", "a", "new"], extra="drop")
    assert c.ids.tolist() == ["b", "a", "new"]
    # a row that was all-zero because it had no attributes is "missing" again, and never an extra
    d = c.align(["a"], extra="keep")
    assert d.ids.tolist() == ["a", "b"] and d.extra_ids.tolist() == ["b"]
    with pytest.raises(InvalidDataError, match="'new'"):
        c.align(["a", "new"], missing="error")
    with pytest.raises(InvalidDataError, match=r"not in the id map: 'b'"):
        c.align(["a", "new"], extra="error")
    # the shared encoders still transform identically
    frame = people.iloc[[0]]
    np.testing.assert_array_equal(a.transform(frame).toarray(), b.transform(frame).toarray())


def test_aligned_with_interactions():
    inter = Interactions.from_frame(pd.DataFrame({"user": [1, 1, 2, 3], "item": [7, 5, 5, 9]}))
    items = pd.DataFrame({"genres": ["A", "B", "A|B", "C"]}, index=[9, 7, 5, 100])
    a = Attributes.from_frame(items, multilabel="genres", ids=inter.item_ids)
    assert a.ids[: inter.n_items].tolist() == inter.item_ids.tolist()
    assert a.extra_ids.tolist() == [100] and a.missing_ids.size == 0
    m = dense(a)
    for item, labels in [(5, "A|B"), (7, "B"), (9, "A"), (100, "C")]:
        row = m[a.index(item)]
        on = {a.feature_names[j] for j in np.flatnonzero(row)}
        assert on == {f"genres={x}" for x in labels.split("|")}
        if item != 100:
            assert a.index(item) == inter.item_index(item)
    with pytest.raises(InvalidParameterError, match="item_ids"):
        Attributes.from_frame(items, multilabel="genres", ids=inter)


ids_strategy = st.one_of(
    st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=25, unique=True),
    st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=25, unique=True),
)


@settings(max_examples=60, deadline=None)
@given(ids_strategy, st.data())
def test_ids_round_trip(attr_ids, data):
    cats = data.draw(st.lists(st.sampled_from("pqrs"), min_size=len(attr_ids), max_size=len(attr_ids)))
    df = pd.DataFrame({"id": pd.Series(attr_ids, dtype=object), "c": cats})
    kept = data.draw(st.lists(st.sampled_from(attr_ids), min_size=1, unique=True))
    if isinstance(attr_ids[0], int):
        fresh = [10**7 + k for k in range(data.draw(st.integers(0, 3)))]
    else:
        fresh = [f"new{k}!" for k in range(data.draw(st.integers(0, 3)))]
    id_map = data.draw(st.permutations(kept + fresh))
    a = Attributes.from_frame(df, "id", categorical="c", ids=id_map)
    expected_extra = [x for x in attr_ids if x not in kept]
    assert a.ids.tolist() == list(id_map) + expected_extra
    assert sorted(map(str, a.missing_ids)) == sorted(map(str, fresh))
    assert a.extra_ids.tolist() == expected_extra
    m = dense(a)
    value_of = dict(zip(attr_ids, cats))
    for r, x in enumerate(a.ids):
        on = [a.feature_names[j] for j in np.flatnonzero(m[r])]
        assert on == ([] if x in fresh else [f"c={value_of[x]}"])
        assert a.index(x) == r
    # align back to the frame order reproduces the plain encoding (same feature space)
    plain = Attributes.from_frame(df, "id", categorical="c", ids=id_map + [x for x in attr_ids if x not in kept])
    back = a.align(attr_ids, extra="drop")
    assert back.ids.tolist() == list(attr_ids)
    direct = Attributes.from_frame(df, "id", categorical="c")
    assert back.feature_names == direct.feature_names == plain.feature_names
    np.testing.assert_array_equal(dense(back), dense(direct))
    frame = a.to_frame(dense=True)
    assert frame.index.tolist() == a.ids.tolist()
    np.testing.assert_array_equal(frame.to_numpy(), m)


# ---------------------------------------------------------------------------- transform / extend


def test_transform_unseen_values_uses_fitted_encoders():
    df = pd.DataFrame(
        {
            "g": ["F", "M", "F"],
            "genres": ["A|B", "B", "C"],
            "age": [10.0, 20.0, 30.0],
            "t": ["red car", "blue car", "red"],
        },
        index=[1, 2, 3],
    )
    a = Attributes.from_frame(df, categorical="g", multilabel="genres", numeric="age", text="t")
    # the training rows transform to the matrix itself
    np.testing.assert_allclose(a.transform(df).toarray(), dense(a), rtol=1e-6)
    new = pd.DataFrame(
        {
            "g": ["Z", None],
            "genres": ["A|Horror", "Horror"],
            "age": [40.0, np.nan],
            "t": ["green car", "zzz"],
            "other": [0, 0],
        }
    )
    out = a.transform(new)
    assert isinstance(out, sp.csr_matrix) and out.dtype == np.float32 and out.shape == (2, a.n_features)
    got = pd.DataFrame(out.toarray(), columns=a.feature_names)
    assert (got[["g=F", "g=M"]].to_numpy() == 0).all()  # unseen category / NaN -> zeros
    assert got["genres=A"].tolist() == [1, 0] and got[["genres=B", "genres=C"]].to_numpy().sum() == 0
    sd = np.std([10.0, 20.0, 30.0])
    np.testing.assert_allclose(got["age"], [(40 - 20) / sd, 0.0], rtol=1e-6)  # fitted mean/std; NaN -> mean
    np.testing.assert_allclose(got["t:tfidf:car"], [1.0, 0.0], rtol=1e-6)  # 'green' unknown, 'zzz' unknown
    with pytest.raises(InvalidDataError, match="'age'"):
        a.transform(new.drop(columns="age"))
    with pytest.raises(InvalidDataError, match=r"row 1, column 'age'.*'old'"):
        a.transform(new.assign(age=["3", "old"]))
    assert a.transform(new.iloc[:0]).shape == (0, a.n_features)


def test_extend_appends_cold_start_rows():
    df = pd.DataFrame({"id": [1, 2], "g": ["x", "y"]})
    a = Attributes.from_frame(df, "id", categorical="g")
    b = a.extend(pd.DataFrame({"id": [3], "g": ["y"]}), id="id")
    assert b.ids.tolist() == [1, 2, 3] and b.feature_names == a.feature_names
    np.testing.assert_array_equal(dense(b)[2], [0, 1])
    with pytest.raises(InvalidDataError, match=r"already have attributes: 2"):
        a.extend(pd.DataFrame({"g": ["x"]}, index=[2]))


# ---------------------------------------------------------------------------- validation


def test_duplicate_ids_named():
    df = pd.DataFrame({"id": ["a", "b", "a"], "g": ["x", "y", "z"]})
    with pytest.raises(InvalidDataError, match=r"id 'a' has more than one attribute row \(rows \[0, 2\]\)"):
        Attributes.from_frame(df, "id", categorical="g")
    with pytest.raises(InvalidDataError, match=r"id 7 has more than one"):
        Attributes.from_frame(pd.DataFrame({"g": ["x", "y"]}, index=[7, 7]), categorical="g")


def test_bad_columns_and_options():
    df = pd.DataFrame({"id": [1, 2], "g": ["x", "y"], "n": [1, 2]})
    with pytest.raises(InvalidDataError, match=r"'nope'.*not in the attribute table.*'g'"):
        Attributes.from_frame(df, "id", categorical=["g", "nope"])
    with pytest.raises(InvalidDataError, match=r"'uid'.*not in the attribute table"):
        Attributes.from_frame(df, "uid", categorical="g")
    with pytest.raises(InvalidParameterError, match="listed twice"):
        Attributes.from_frame(df, "id", categorical="g", numeric="g")
    with pytest.raises(InvalidParameterError, match="no attribute column"):
        Attributes.from_frame(df, "id")
    with pytest.raises(InvalidParameterError, match="id column 'id'"):
        Attributes.from_frame(df, "id", categorical="id")
    with pytest.raises(InvalidParameterError, match="missing must be one of"):
        Attributes.from_frame(df, "id", categorical="g", missing="ignore")
    with pytest.raises(InvalidParameterError, match="extra must be one of"):
        Attributes.from_frame(df, "id", categorical="g", extra="yes")
    with pytest.raises(InvalidParameterError, match="DataFrame"):
        Attributes.from_frame({"g": [1]}, categorical="g")
    with pytest.raises(InvalidDataError, match="'g' appear more than once"):
        Attributes.from_frame(pd.DataFrame([[1, "x", "y"]], columns=["id", "g", "g"]), "id", categorical="g")
    with pytest.raises(InvalidDataError, match="no rows"):
        Attributes.from_frame(df.iloc[:0], "id", categorical="g")
    with pytest.raises(InvalidDataError, match=r"row 1: id \('id'\) is missing"):
        Attributes.from_frame(pd.DataFrame({"id": ["a", None], "g": ["x", "y"]}), "id", categorical="g")
    with pytest.raises(InvalidDataError, match=r"ids: id 3 appears more than once"):
        Attributes.from_frame(df, "id", categorical="g", ids=[1, 3, 3])
    with pytest.raises(InvalidDataError, match=r"numeric column 'n' has no values"):
        Attributes.from_frame(pd.DataFrame({"id": [1], "n": [np.nan]}), "id", numeric="n")
    with pytest.raises(InvalidDataError, match=r"categorical column 'g' has no values"):
        Attributes.from_frame(pd.DataFrame({"id": [1], "g": [None]}), "id", categorical="g")
    with pytest.raises(InvalidDataError, match=r"id 2 \(row 1\), column 'm'.*not a"):
        Attributes.from_frame(pd.DataFrame({"id": [1, 2], "m": ["a", {"x": 1}]}), "id", multilabel="m")


def test_index_lookup_and_to_frame():
    df = pd.DataFrame({"g": ["x", "y", "x"]}, index=pd.Index(["a", "b", "c"], name="item"))
    a = Attributes.from_frame(df, categorical="g")
    assert a.index("b") == 1
    assert a.index(["c", "a"]).tolist() == [2, 0]
    assert a.index(["c", "zz"], missing="ignore").tolist() == [2, -1]
    with pytest.raises(UnknownIdError, match="'zz'"):
        a.index("zz")
    sparse_frame = a.to_frame()
    assert all(isinstance(t, pd.SparseDtype) for t in sparse_frame.dtypes)
    pd.testing.assert_frame_equal(sparse_frame.sparse.to_dense(), a.to_frame(dense=True), check_dtype=False)
    assert a.to_frame(dense=True).loc["c", "g=x"] == 1.0
    assert len(a) == 3 and a.shape == (3, 2)


# ---------------------------------------------------------------------------- real data (ml-100k)

GENRE_COLS = list(range(5, 24))


def test_ml100k_item_genres_are_19_multilabel_features():
    path = shared_dataset("ml-100k")
    genres = pd.read_csv(path / "u.genre", sep="|", header=None, names=["name", "code"], encoding="latin-1").dropna()
    items = pd.read_csv(path / "u.item", sep="|", header=None, encoding="latin-1")
    names = genres.sort_values("code")["name"].tolist()
    assert len(names) == 19
    flags = items[GENRE_COLS].to_numpy()
    frame = pd.DataFrame(
        {"item": items[0], "genres": ["|".join(n for n, f in zip(names, row) if f) for row in flags]}
    )
    ratings = pd.read_csv(path / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"])
    inter = Interactions.from_frame(ratings, value="rating")
    a = Attributes.from_frame(frame, "item", multilabel="genres", ids=inter.item_ids, missing="error", extra="error")
    assert a.n_features == 19 and sorted(a.feature_names) == sorted(f"genres={n}" for n in names)
    assert a.shape == (inter.n_items, 19)
    # every row reproduces the file's 0/1 flags, whatever the row order
    order = [a.feature_names.index(f"genres={n}") for n in names]
    rows = a.index(items[0].to_numpy())
    np.testing.assert_array_equal(dense(a)[rows][:, order], flags)
    check_canonical(a)


def test_ml100k_users_gender_occupation_age():
    path = shared_dataset("ml-100k")
    users = pd.read_csv(path / "u.user", sep="|", header=None, names=["user", "age", "gender", "occupation", "zip"])
    a = Attributes.from_frame(users, "user", categorical=["gender", "occupation"], numeric="age")
    n_occ = users["occupation"].nunique()
    assert a.n_features == 2 + n_occ + 1 == 24
    assert a.feature_names[:2] == ["gender=F", "gender=M"] and a.feature_names[-1] == "age"
    m = dense(a)
    np.testing.assert_array_equal(m[:, :2].sum(axis=1), 1)
    np.testing.assert_array_equal(m[:, a.feature_groups["occupation"]].sum(axis=1), 1)
    np.testing.assert_array_equal(m[:, 0], (users["gender"] == "F").to_numpy())
    age = users["age"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(m[:, -1], (age - age.mean()) / age.std(), rtol=1e-5, atol=1e-6)
    assert a.n_missing_values == {"gender": 0, "occupation": 0, "age": 0}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.lists(st.sampled_from(["Action", "Comedy", "Drama", "Sci-Fi"]), max_size=4)),
        min_size=1,
        max_size=30,
    )
)
def test_multilabel_matches_python_sets(rows):
    # the same rows as "a|b" strings (parsed once per distinct value) and as lists (parsed row by row)
    strings = [None if r is None else "|".join(r) for r in rows]
    labels = sorted({x for r in rows if r for x in r})
    if not labels:
        return
    expected = np.array([[float(r is not None and x in r) for x in labels] for r in rows])
    for column in (strings, rows):
        df = pd.DataFrame({"g": pd.Series(column, dtype=object)}, index=range(len(rows)))
        a = Attributes.from_frame(df, multilabel="g")
        assert a.feature_names == [f"g={x}" for x in labels]
        np.testing.assert_array_equal(dense(a), expected)
        assert a.n_missing_values["g"] == sum(1 for r in rows if not r)
        np.testing.assert_array_equal(a.transform(df).toarray(), expected)


@pytest.mark.slow
def test_scale_one_million_rows():
    n = 1_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "c": rng.choice(["a", "b", "c", "d"], n),
            "g": rng.choice(["A|B", "B", "C|D|A", ""], n),
            "x": rng.normal(size=n),
        }
    )
    a = Attributes.from_frame(df, categorical="c", multilabel="g", numeric="x", ids=np.arange(n)[::-1])
    assert a.shape == (n, 9)
    m = a.matrix
    rows = a.index(np.array([0, n - 1, 12345]))
    for r, i in zip(rows, [0, n - 1, 12345]):
        got = dict(zip(np.asarray(a.feature_names)[m[r].indices], m[r].data))
        assert got[f"c={df['c'][i]}"] == 1.0
        assert {k for k in got if k.startswith("g=")} == {f"g={x}" for x in df["g"][i].split("|") if x}

"""Dataset loaders: the real files in ../shared/data (skipped when absent) and tiny fakes in each format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_dataset
from mfrec import datasets
from mfrec.data.interactions import Interactions
from mfrec.exceptions import DatasetError, InvalidParameterError


def genre_set(attrs: pd.DataFrame) -> set[str]:
    return {g for row in attrs["genres"] for g in row.split("|") if g}


# ------------------------------------------------------------------ real data (done-when checks)
@pytest.mark.shared_data
def test_ml100k_shared():
    ds = datasets.load("ml-100k", data_dir=shared_dataset("ml-100k").parent)
    x = ds.interactions
    assert (x.n_users, x.n_items, x.nnz) == (943, 1682, 100_000)
    assert ds.kind == "explicit" and ds.name == "ml-100k"
    assert isinstance(x, Interactions) and x.timestamps is not None
    assert set(np.unique(x.matrix.data)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert x.user_ids.dtype.kind == "i" and x.item_ids.dtype.kind == "i"
    assert len(genre_set(ds.item_attributes)) == 19
    assert ds.item_attribute_spec == {"multilabel": {"genres": "|"}, "numeric": ["year"], "text": ["title"]}
    assert ds.item_titles.loc[1] == "Toy Story (1995)"
    assert ds.item_attributes.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert ds.item_attributes.loc[1, "year"] == 1995
    assert ds.user_attributes.shape[0] == 943
    assert ds.user_attributes.loc[1, ["age", "gender", "occupation", "zip"]].tolist() == [24, "M", "technician", "85711"]
    # latin-1 titles decode (e.g. "Misérables")
    assert ds.item_titles.str.contains("é").any()
    # every rated id has attributes
    assert set(x.item_ids) <= set(ds.item_attributes.index)
    assert set(x.user_ids) <= set(ds.user_attributes.index)


@pytest.mark.shared_data
def test_ml100k_data_dir_can_be_the_folder_itself():
    folder = shared_dataset("ml-100k")
    assert datasets.load("ml-100k", data_dir=folder).interactions.nnz == 100_000


@pytest.mark.shared_data
def test_lastfm_shared():
    ds = datasets.load("lastfm-2k", data_dir=shared_dataset("lastfm-2k").parent)
    x = ds.interactions
    assert (x.n_users, x.n_items, x.nnz) == (1892, 17632, 92_834)
    assert ds.kind == "implicit"
    assert x.matrix.data.min() >= 1
    assert ds.item_titles.loc[1] == "MALICE MIZER"
    assert ds.item_attribute_spec["text"] == ["name"]


@pytest.mark.shared_data
def test_ml_latest_small_shared():
    ds = datasets.load("ml-latest-small", data_dir=shared_dataset("ml-latest-small").parent)
    x = ds.interactions
    assert (x.n_users, x.n_items, x.nnz) == (610, 9724, 100_836)
    assert x.matrix.data.min() == 0.5 and x.matrix.data.max() == 5.0
    assert "(no genres listed)" not in genre_set(ds.item_attributes)
    assert ds.item_titles.loc[1] == "Toy Story (1995)"
    assert set(x.item_ids) <= set(ds.item_attributes.index)


# ------------------------------------------------------------------ fakes in each format
def write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def test_ml1m_fake(tmp_path):
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(d / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
          "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
          "7::Misérables, Les (1995)::Drama|Musical\n", encoding="latin-1")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = datasets.load("ml-1m", data_dir=tmp_path)
    x = ds.interactions
    assert (x.n_users, x.n_items, x.nnz) == (2, 2, 3)
    assert x.item_ids.tolist() == [661, 1193]
    assert x.matrix[x.user_index(1), x.item_index(661)] == 3.0
    assert x.timestamps is not None
    assert ds.item_titles.loc[7] == "Misérables, Les (1995)"
    assert ds.item_attributes.loc[661, "genres"] == "Animation|Children's|Musical"
    assert ds.item_attributes.loc[1193, "year"] == 1975
    assert ds.user_attributes.loc[1, "occupation"] == "K-12 student"
    assert ds.user_attributes.loc[2, "occupation"] == "self-employed"
    assert ds.user_attributes.loc[1, "zip"] == "48067"
    assert ds.user_attribute_spec == {"categorical": ["gender", "occupation"], "numeric": ["age"]}


def test_ml10m_fake_in_its_zip_folder(tmp_path):
    d = tmp_path / "ml-10M100K"  # the folder name inside ml-10m.zip
    write(d / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n3::122::0.5::838983421\n")
    write(d / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n")
    ds = datasets.load("ml-10m", data_dir=tmp_path)
    assert ds.interactions.nnz == 3
    assert sorted(ds.interactions.matrix.data.tolist()) == [0.5, 4.5, 5.0]
    assert ds.user_attributes is None
    assert ds.item_titles.loc[185] == "Net, The (1995)"


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m"])
def test_ml_csv_editions_fake(tmp_path, name):
    d = tmp_path / name
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n"
          "2,2,4.0,974820889\n")
    write(d / "movies.csv", 'movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n'
          '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama\n'
          '31,Untitled,(no genres listed)\n')
    ds = datasets.load(name, data_dir=d)  # the folder itself
    assert (ds.interactions.n_users, ds.interactions.n_items, ds.interactions.nnz) == (2, 2, 3)
    assert ds.item_titles.loc[29].startswith("City of Lost Children, The")
    assert ds.item_attributes.loc[29, "year"] == 1995
    assert ds.item_attributes.loc[31, "genres"] == ""
    assert np.isnan(ds.item_attributes.loc[31, "year"])


def test_lastfm_fake_crlf_with_tags(tmp_path):
    d = tmp_path / "hetrec2011-lastfm-2k"
    write(d / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n4\t51\t7\n", newline="\r\n")
    write(d / "artists.dat", 'id\tname\turl\tpictureURL\n51\tDuran "Duran"\thttp://a\thttp://p\n'
          "52\tMorcheeba\thttp://b\thttp://q\n53\tNULL\thttp://c\t\n")
    write(d / "tags.dat", "tagID\ttagValue\n1\tpop\n2\tnew wave\n3\ttrip|hop\n", newline="\r\n")
    write(d / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n"
          "2\t51\t1\t1\t4\t2009\n4\t51\t2\t1\t4\t2009\n5\t51\t2\t1\t4\t2009\n2\t52\t3\t1\t4\t2009\n", newline="\r\n")
    ds = datasets.load("lastfm-2k", data_dir=tmp_path)
    x = ds.interactions
    assert ds.kind == "implicit"
    assert (x.n_users, x.n_items, x.nnz) == (2, 2, 3)
    assert x.matrix[x.user_index(2), x.item_index(51)] == 13883
    assert ds.item_titles.loc[51] == 'Duran "Duran"'
    assert ds.item_titles.loc[53] == "NULL"  # a real artist name, not a missing value
    assert ds.item_attributes.loc[51, "tags"] == "new wave|pop"  # most used first
    assert ds.item_attributes.loc[52, "tags"] == "trip/hop"  # the separator is escaped
    assert ds.item_attributes.loc[53, "tags"] == ""
    assert ds.item_attribute_spec == {"text": ["name"], "multilabel": {"tags": "|"}}


def test_ml100k_fake_without_side_files(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t881250950\n")
    ds = datasets.load("ml-100k", data_dir=tmp_path)
    assert ds.interactions.nnz == 2
    assert ds.item_attributes is None and ds.user_attributes is None and ds.item_titles is None


# ------------------------------------------------------------------ errors
def test_missing_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"ratings\.dat.*ml-1m\.zip"):
        datasets.load("ml-1m", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        datasets.load("ml-1m", data_dir=tmp_path / "nope")


def test_unknown_name_lists_available():
    with pytest.raises(DatasetError, match="ml-100k"):
        datasets.load("ml-7k")


def test_bad_row_is_a_dataset_error_naming_the_file(tmp_path):
    write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::11::abc::978300761\n")
    with pytest.raises(DatasetError, match=r"ratings\.dat, line 2.*'abc'"):
        datasets.load("ml-1m", data_dir=tmp_path)
    write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::10::4::978300761\n")
    with pytest.raises(DatasetError, match=r"ratings\.dat, line 2: duplicate"):
        datasets.load("ml-1m", data_dir=tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1\n1,3,-1,2\n")
    with pytest.raises(DatasetError, match=r"ratings\.csv, line 3.*negative"):
        datasets.load("ml-20m", data_dir=tmp_path)


def test_csv_missing_column(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,score\n1,2,3\n")
    with pytest.raises(DatasetError, match="rating"):
        datasets.load("ml-20m", data_dir=tmp_path)


def test_available_and_options():
    names = datasets.available()
    assert names == sorted(names)
    assert {"ml-100k", "ml-latest-small", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "lastfm-2k",
            "synthetic"} <= set(names)
    with pytest.raises(InvalidParameterError):
        datasets.load("ml-100k", data_dir=".", n_users=3)

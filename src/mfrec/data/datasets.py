"""Public datasets: MovieLens (100K, latest-small, 1M, 10M, 20M, 25M, 32M), HetRec Last.fm 2K, synthetic.

:func:`load` reads a dataset from a local folder (``data_dir``) or downloads the publisher's zip into the
cache (see :mod:`mfrec.data.download`), and returns a :class:`Dataset`: the interactions plus, where the
source has them, user / item attribute tables, item titles and a spec saying how each attribute column is
encoded (for ``mfrec.Attributes.from_frame(df, **spec)``).

The publishers' terms allow research use but not redistribution; mfrec never ships these files.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfrec.data.dataset import Dataset
from mfrec.data.download import Archive, cache_dir, install_archive
from mfrec.data.interactions import Interactions, _Origin
from mfrec.data.synthetic import synthetic
from mfrec.exceptions import DatasetError, InvalidDataError, InvalidParameterError

__all__ = ["Dataset", "load", "available", "DATASETS"]

_GROUPLENS = "https://files.grouplens.org/datasets"


@dataclass(frozen=True)
class _Source:
    """Registry entry: archive, the file that marks a good copy, folder names inside zips, reader."""

    archive: Archive | None
    marker: str
    reader: Callable[[Path, str], Dataset] | None  # None: generated, not read (synthetic)
    folders: tuple[str, ...] = ()
    description: str = ""


# ----------------------------------------------------------------------------- reading helpers
def _require(folder: Path, filename: str, name: str) -> Path:
    path = folder / filename
    if not path.is_file():
        raise DatasetError(
            f"{name}: missing file {path}; unzip the publisher's archive ({_url_of(name)}) there, "
            "or call load() without data_dir to download it"
        )
    return path


def _url_of(name: str) -> str:
    src = DATASETS.get(name)
    return src.archive.url if src is not None and src.archive is not None else "see the publisher's site"


def _read_table(
    path: Path,
    sep: str,
    names: list[str] | None,
    *,
    header: bool = False,
    encodings: tuple[str, ...] = ("utf-8", "latin-1"),
    dtype: dict[str, Any] | None = None,
    usecols: list[str] | None = None,
) -> pd.DataFrame:
    """Read a delimited file with the C parser; a multi-character ``sep`` ("::") is rewritten to a tab first.

    Quotes are not special (MovieLens titles contain ``"``). The first encoding that decodes wins.
    """
    raw = path.read_bytes()
    if len(sep) > 1:
        raw = raw.replace(sep.encode(), b"\t")
        sep = "\t"
    last: Exception | None = None
    for enc in encodings:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as exc:
            last = exc
            continue
        try:
            return pd.read_csv(
                io.StringIO(text),
                sep=sep,
                header=0 if header else None,
                names=names,
                quoting=csv.QUOTE_NONE,
                dtype=dtype,
                usecols=usecols,
                engine="c",
                keep_default_na=False,
                na_values=[""],
            )
        except (pd.errors.ParserError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot parse ({exc})".replace("\n", " ")) from exc
    raise DatasetError(f"{path}: cannot decode as {' or '.join(encodings)} ({last})")


def _ratings(
    df: pd.DataFrame, path: Path, *, header: bool, value: str = "rating", timestamp: str | None = "timestamp",
) -> Interactions:
    """Interactions from the standard columns; a bad row raises DatasetError naming the file and line."""
    try:
        data = Interactions.from_frame(
            df, user="user", item="item", value=value, timestamp=timestamp, duplicates="error",
            allow_negative=False, _origin=_Origin(source=str(path), first_line=2 if header else 1),
        )
    except InvalidDataError as exc:
        raise DatasetError(str(exc)) from exc
    data.source = str(path)
    return data


_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _year_from_title(titles: pd.Series) -> pd.Series:
    """The trailing "(1995)" of a MovieLens title as a float year (NaN where absent)."""
    return titles.str.strip().str.extract(_YEAR, expand=False).astype("float64")


def _movies_with_genres(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """movieId/title/genres rows -> (item_attributes[title, year, genres], titles)."""
    df = df.drop_duplicates("item", keep="first").set_index("item")
    df.index.name = "item"
    genres = df["genres"].fillna("").replace("(no genres listed)", "")
    attrs = pd.DataFrame(
        {"title": df["title"], "year": _year_from_title(df["title"]), "genres": genres}, index=df.index
    )
    return attrs, df["title"].rename("title")


_MOVIE_SPEC: dict[str, Any] = {"multilabel": {"genres": "|"}, "numeric": ["year"], "text": ["title"]}

# ----------------------------------------------------------------------------- MovieLens 100K
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def _read_ml100k(folder: Path, name: str) -> Dataset:
    path = _require(folder, "u.data", name)
    df = _read_table(path, "\t", ["user", "item", "rating", "timestamp"], dtype={"user": np.int64, "item": np.int64})
    interactions = _ratings(df, path, header=False)

    item_attributes = titles = None
    if (folder / "u.item").is_file():
        genre_names = list(_ML100K_GENRES)
        if (folder / "u.genre").is_file():
            g = _read_table(folder / "u.genre", "|", ["genre", "code"], encodings=("latin-1",)).dropna()
            genre_names = [str(x) for x in g.sort_values("code")["genre"]]
        cols = ["item", "title", "release_date", "video_release_date", "url", *genre_names]
        items = _read_table(folder / "u.item", "|", cols, encodings=("latin-1",))
        flags = items[genre_names].to_numpy(dtype=bool)
        names_arr = np.array(genre_names, dtype=object)
        genres = ["|".join(names_arr[row]) for row in flags]
        release = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
        item_attributes = pd.DataFrame(
            {
                "title": items["title"].fillna("").to_numpy(),
                "year": release.dt.year.astype("float64").to_numpy(),
                "genres": genres,
                "url": items["url"].to_numpy(),
            },
            index=pd.Index(items["item"].to_numpy(), name="item"),
        )
        titles = item_attributes["title"].copy()

    user_attributes = None
    if (folder / "u.user").is_file():
        users = _read_table(
            folder / "u.user", "|", ["user", "age", "gender", "occupation", "zip"], encodings=("latin-1",),
            dtype={"zip": str},
        )
        user_attributes = users.set_index("user")
        user_attributes["age"] = user_attributes["age"].astype("float64")
    return Dataset(
        name=name,
        kind="explicit",
        interactions=interactions,
        user_attributes=user_attributes,
        item_attributes=item_attributes,
        user_attribute_spec={"categorical": ["gender", "occupation"], "numeric": ["age"]},
        item_attribute_spec=dict(_MOVIE_SPEC),
        item_titles=titles,
        path=folder,
        description="MovieLens 100K: 1-5 star ratings (GroupLens, 1998)",
    )


# ----------------------------------------------------------------------------- MovieLens CSV editions
def _read_ml_csv(folder: Path, name: str) -> Dataset:
    """ml-latest-small, ml-20m, ml-25m, ml-32m: ratings.csv + movies.csv."""
    path = _require(folder, "ratings.csv", name)
    df = _read_table(
        path, ",", None, header=True,
        dtype={"userId": np.int64, "movieId": np.int64},
    )
    missing = {"userId", "movieId", "rating", "timestamp"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    df = df.rename(columns={"userId": "user", "movieId": "item"})
    interactions = _ratings(df, path, header=True)
    item_attributes = titles = None
    if (folder / "movies.csv").is_file():
        # titles contain commas inside quotes: use the standard CSV quoting here
        movies = pd.read_csv(folder / "movies.csv", dtype={"movieId": np.int64}, keep_default_na=False)
        movies = movies.rename(columns={"movieId": "item"})
        item_attributes, titles = _movies_with_genres(movies)
    return Dataset(
        name=name,
        kind="explicit",
        interactions=interactions,
        item_attributes=item_attributes,
        item_attribute_spec=dict(_MOVIE_SPEC),
        item_titles=titles,
        path=folder,
        description=f"MovieLens {name[3:]}: 0.5-5 star ratings (GroupLens)",
    )


# ----------------------------------------------------------------------------- MovieLens "::" editions
_ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)


def _read_ml_dat(folder: Path, name: str) -> Dataset:
    """ml-1m and ml-10m: ``::``-separated ratings.dat, movies.dat (and users.dat for ml-1m)."""
    path = _require(folder, "ratings.dat", name)
    df = _read_table(
        path, "::", ["user", "item", "rating", "timestamp"],
        dtype={"user": np.int64, "item": np.int64},
    )
    interactions = _ratings(df, path, header=False)
    item_attributes = titles = None
    if (folder / "movies.dat").is_file():
        movies = _read_table(folder / "movies.dat", "::", ["item", "title", "genres"], dtype={"item": np.int64})
        item_attributes, titles = _movies_with_genres(movies)
    user_attributes = None
    user_spec: dict[str, Any] = {}
    if (folder / "users.dat").is_file():
        users = _read_table(
            folder / "users.dat", "::", ["user", "gender", "age", "occupation", "zip"],
            dtype={"user": np.int64, "zip": str},
        )
        codes = users["occupation"].to_numpy()
        occ = np.array(_ML1M_OCCUPATIONS, dtype=object)
        ok = (codes >= 0) & (codes < len(occ))
        users["occupation"] = np.where(ok, occ[np.clip(codes, 0, len(occ) - 1)], codes.astype(str))
        users["age"] = users["age"].astype("float64")  # age-group lower bound: 1, 18, 25, 35, 45, 50, 56
        user_attributes = users.set_index("user")[["age", "gender", "occupation", "zip"]]
        user_spec = {"categorical": ["gender", "occupation"], "numeric": ["age"]}
    return Dataset(
        name=name,
        kind="explicit",
        interactions=interactions,
        user_attributes=user_attributes,
        item_attributes=item_attributes,
        user_attribute_spec=user_spec,
        item_attribute_spec=dict(_MOVIE_SPEC),
        item_titles=titles,
        path=folder,
        description=f"MovieLens {name[3:].upper()}: star ratings (GroupLens)",
    )


# ----------------------------------------------------------------------------- HetRec Last.fm
def _read_lastfm(folder: Path, name: str) -> Dataset:
    path = _require(folder, "user_artists.dat", name)
    df = _read_table(path, "\t", None, header=True, dtype={"userID": np.int64, "artistID": np.int64})
    df.columns = [str(c).strip() for c in df.columns]
    missing = {"userID", "artistID", "weight"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    df = df.rename(columns={"userID": "user", "artistID": "item"})
    interactions = _ratings(df, path, header=True, value="weight", timestamp=None)
    item_attributes = titles = None
    item_spec: dict[str, Any] = {}
    if (folder / "artists.dat").is_file():
        artists = _read_table(folder / "artists.dat", "\t", None, header=True, dtype={"id": np.int64})
        artists = artists.rename(columns={"id": "item"}).drop_duplicates("item").set_index("item")
        item_attributes = artists[[c for c in ("name", "url") if c in artists.columns]].copy()
        item_attributes["name"] = item_attributes["name"].fillna("").astype(str)
        titles = item_attributes["name"].rename("title")
        item_spec = {"text": ["name"]}
        tags = _lastfm_tags(folder)
        if tags is not None:
            item_attributes["tags"] = tags.reindex(item_attributes.index).fillna("")
            item_spec["multilabel"] = {"tags": "|"}
    return Dataset(
        name=name,
        kind="implicit",
        interactions=interactions,
        item_attributes=item_attributes,
        item_attribute_spec=item_spec,
        item_titles=titles,
        path=folder,
        description="HetRec 2011 Last.fm 2K: user x artist play counts",
    )


def _lastfm_tags(folder: Path, top: int = 10) -> pd.Series | None:
    """Each artist's ``top`` most used tags, "|"-joined (needs user_taggedartists.dat and tags.dat)."""
    if not (folder / "user_taggedartists.dat").is_file() or not (folder / "tags.dat").is_file():
        return None
    assigned = _read_table(folder / "user_taggedartists.dat", "\t", None, header=True)
    names = _read_table(folder / "tags.dat", "\t", None, header=True).set_index("tagID")["tagValue"]
    counts = assigned.groupby(["artistID", "tagID"]).size().rename("n").reset_index()
    counts = counts.sort_values(["artistID", "n", "tagID"], ascending=[True, False, True])
    counts = counts.groupby("artistID").head(top)
    counts["tag"] = counts["tagID"].map(names).fillna("").astype(str).str.replace("|", "/", regex=False)
    return counts.groupby("artistID")["tag"].agg("|".join)


# ----------------------------------------------------------------------------- registry
DATASETS: dict[str, _Source] = {
    # SHA-256 and sizes: tensorflow_datasets' url_checksums/movielens.txt.
    "ml-100k": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-100k.zip", 4924029,
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
        "u.data", _read_ml100k, ("ml-100k",), "MovieLens 100K (943 users, 1682 movies, 100,000 ratings)",
    ),
    "ml-latest-small": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-latest-small.zip", 978202,
                sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
        "ratings.csv", _read_ml_csv, ("ml-latest-small",), "MovieLens latest-small (610 users, 100,836 ratings)",
    ),
    "ml-1m": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-1m.zip", 5917549,
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
        "ratings.dat", _read_ml_dat, ("ml-1m",), "MovieLens 1M (6,040 users, 1,000,209 ratings)",
    ),
    # No published SHA-256 found for ml-10m: GroupLens publishes ml-10m.zip.md5, used here.
    "ml-10m": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-10m.zip", None, md5="ce571fd55effeba0271552578f2648bd"),
        "ratings.dat", _read_ml_dat, ("ml-10M100K", "ml-10m"), "MovieLens 10M (10,000,054 ratings)",
    ),
    "ml-20m": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-20m.zip", 198702078,
                sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"),
        "ratings.csv", _read_ml_csv, ("ml-20m",), "MovieLens 20M (20,000,263 ratings)",
    ),
    "ml-25m": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-25m.zip", 261978986,
                sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"),
        "ratings.csv", _read_ml_csv, ("ml-25m",), "MovieLens 25M (25,000,095 ratings)",
    ),
    # No published checksum found for ml-32m (2024): only the transfer's Content-Length and the zip's own
    # CRCs are verified. Record its SHA-256 here once known (mfrec.data.download.checksums).
    "ml-32m": _Source(
        Archive(f"{_GROUPLENS}/movielens/ml-32m.zip"),
        "ratings.csv", _read_ml_csv, ("ml-32m",), "MovieLens 32M (32,000,204 ratings)",
    ),
    # SHA-256 from a single third-party source (not published by GroupLens); size unknown.
    "lastfm-2k": _Source(
        Archive(f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
                sha256="6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c"),
        "user_artists.dat", _read_lastfm, ("lastfm-2k", "hetrec2011-lastfm-2k"),
        "HetRec 2011 Last.fm (1892 users, 17632 artists, 92,834 play counts)",
    ),
    "synthetic": _Source(None, "", None, (), "planted low-rank preferences, generated offline"),
}


def available() -> list[str]:
    """Names accepted by :func:`load`, sorted (``"synthetic"`` included)."""
    return sorted(DATASETS)


def _locate(name: str, source: _Source, data_dir: Path) -> Path | None:
    for candidate in (*(data_dir / f for f in (name, *source.folders)), data_dir):
        if (candidate / source.marker).is_file():
            return candidate
    return None


def load(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a public dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`available`: ``ml-100k``, ``ml-latest-small``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
        ``ml-25m``, ``ml-32m``, ``lastfm-2k``, ``synthetic``.
    data_dir : path, optional
        Read the files from here: either ``data_dir/NAME/`` (or the folder name inside the publisher's zip,
        e.g. ``ml-10M100K``) or ``data_dir`` itself holding the files. Nothing is downloaded then.
        Without it the cache (``$MFREC_DATA`` or the user cache dir) is used, downloading on first use.
    download : bool
        When False, never use the network: a dataset missing from the cache is an error.
    progress : bool, optional
        Download progress bar; default only on a terminal.
    **kwargs
        Passed to :func:`mfrec.data.synthetic.synthetic` for ``name="synthetic"``.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Unknown name, missing files (named, with what to do), failed or corrupt download.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(available())}")
    if name == "synthetic":
        return synthetic(**kwargs)
    if kwargs:
        raise InvalidParameterError(f"load({name!r}) takes no options {', '.join(sorted(kwargs))}")
    source = DATASETS[name]
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DatasetError(f"{name}: data_dir {data_dir} is not a folder")
        folder = _locate(name, source, data_dir)
        if folder is None:
            raise DatasetError(
                f"{name}: missing file {source.marker} (looked in {data_dir / name} and {data_dir}); "
                f"download {source.archive.url} and unzip it into {data_dir}, "
                "or call load() without data_dir to download it into the cache"
            )
    else:
        root = cache_dir()
        folder = root / name
        if not (folder / source.marker).is_file():
            if not download:
                raise DatasetError(
                    f"{name}: not in the cache ({folder / source.marker} is missing) and download=False; "
                    f"allow the download, or unzip {source.archive.url} there, or pass data_dir="
                )
            folder = install_archive(name, source.archive, source.marker, root=root, progress=progress)
    return source.reader(folder, name)

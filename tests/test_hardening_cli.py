"""Careless and hostile input to the CLI and the data readers (issue "Hardening", defects 1, 4, 8-17).

Every case must end in exactly one line on stderr and exit code 2, quickly and without a traceback; the
readers' cases raise one mfrec error naming the file (and the line and column where there is one). The malformed
files are generated (hypothesis) as well as written out.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfrec import ImplicitALS, InvalidDataError, InvalidParameterError, MfrecError, read_interactions
from mfrec.cli import main
from model_conformance import planted_interactions


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "ratings.csv"
    r = np.random.default_rng(0)
    pd.DataFrame({"user": r.integers(0, 30, 400), "item": r.integers(0, 40, 400),
                  "rating": r.integers(1, 6, 400)}).to_csv(path, index=False)
    return path


def _one_line_error(capsys, argv, *needles):
    started = time.perf_counter()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # usage errors leave through argparse
        code = exc.code
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("mfrec: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert len(lines[0]) < 400, lines[0]
    assert seconds < 30
    return lines[0]


# ------------------------------------------------------------------------------------- defects 1, 12, 16: sizes
@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "{csv}", "--model", "explicit-als", "--cv", "100000"], "--cv"),
    (["evaluate", "{csv}", "--model", "explicit-als", "--cv", "0"], "--cv"),
    (["tune", "{csv}", "--model", "explicit-als", "factors=2,4", "--cv", "100000"], "--cv"),
    (["evaluate", "{csv}", "--model", "popularity", "-k", "1000000000"], "-k"),
    (["tune", "{csv}", "--model", "explicit-als", "factors=2,4", "-k", "1000000000"], "-k"),
    (["tune", "{csv}", "--model", "explicit-als", "factors=2,4", "--random", "0"], "--random"),
    (["evaluate", "{csv}", "--model", "popularity", "--test-fraction", "1.5"], "--test-fraction"),
    (["evaluate", "synthetic", "--model", "popularity", "--synthetic-users", "100000000"], "--synthetic-users"),
    (["serve", "m.mfrec", "--max-k", "0"], "--max-k"),
    (["serve", "m.mfrec", "--max-body-bytes", "-1"], "--max-body-bytes"),
    (["serve", "m.mfrec", "--workers", "0"], "--workers"),
    (["serve", "m.mfrec", "--port", "70000"], "--port"),
    (["serve", "m.mfrec", "--watch", "0"], "--watch"),
    (["serve", "m.mfrec", "--index", "ivf"], "--index"),
])
def test_sizes_from_the_command_line_are_bounded(capsys, csv, argv, needle):
    _one_line_error(capsys, [a.replace("{csv}", str(csv)) for a in argv], needle)


def test_kfold_is_bounded_in_the_library_too():
    from mfrec.evaluation.search import cross_validate

    with pytest.raises(InvalidParameterError, match="n_splits must be <= 100"):
        cross_validate(ImplicitALS(factors=2, iterations=1), planted_interactions(), cv=100_000)


# ------------------------------------------------------------------------------------- defect 4: memory
@pytest.mark.parametrize("model", ["explicit-als", "implicit-als", "hybrid"])
def test_huge_factors_are_refused_before_allocating(capsys, csv, model):
    attributes = csv.parent / "items.csv"
    pd.DataFrame({"item": range(40), "genre": list("abcd") * 10}).to_csv(attributes, index=False)
    extra = ["--item-attributes", attributes] if model == "hybrid" else []
    tracemalloc.start()
    try:
        _one_line_error(capsys, ["train", csv, "--model", model, "factors=100000", "--out", csv.parent / "m.mfrec",
                                 *extra], "factors=100000", "GiB", "lower factors")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20


# ------------------------------------------------------------------------------------- defects 8, 9: shape of text
def test_a_hundred_thousand_columns_are_refused_at_once(tmp_path, capsys):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(["c"] * 100_000) + "\n" + ",".join(["1"] * 100_000) + "\n")
    _one_line_error(capsys, ["data", "info", path], "100000 columns", "--sep")


def test_the_column_bound_holds_for_a_sniffed_separator_too(tmp_path, capsys):
    """The bound used to count the default ',' before the separator was sniffed: 5000 ';' columns passed it."""
    path = tmp_path / "wide-semicolon.csv"
    path.write_text(";".join(f"c{j}" for j in range(5000)) + "\n" + ";".join(["1"] * 5000) + "\n")
    _one_line_error(capsys, ["data", "info", path], "5000 columns", "';'")


def test_a_huge_line_without_a_separator_is_refused_without_echoing_it(tmp_path, capsys):
    path = tmp_path / "one-line.csv"
    path.write_bytes(b"x" * (20 << 20))
    tracemalloc.start()
    try:
        line = _one_line_error(capsys, ["data", "info", path], "longer than 1 MiB")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "xxxxxxxxxx" not in line and peak < 50 * 2**20


def test_a_huge_value_is_quoted_in_a_few_characters(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n1,3," + "9" * 100 + "x" * (2 << 20) + "\n")
    line = _one_line_error(capsys, ["data", "info", path], "line 3", "rating", "chars)")
    assert len(line) < 300


# ------------------------------------------------------------------------------------- defect 10: compression
@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip"])
def test_corrupt_compressed_files_are_one_error(tmp_path, capsys, csv, suffix):
    raw = csv.read_bytes()
    path = tmp_path / f"r{suffix}"
    if suffix.endswith(".gz"):
        blob = gzip.compress(raw)
    elif suffix.endswith(".bz2"):
        blob = bz2.compress(raw)
    elif suffix.endswith(".xz"):
        blob = lzma.compress(raw)
    else:
        import io

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("r.csv", raw)
        blob = buf.getvalue()
    path.write_bytes(blob)
    assert read_interactions(path).nnz > 0  # the intact file reads
    for broken in (blob[: len(blob) // 2], blob[:10] + bytes(len(blob) - 10), b"not compressed at all"):
        path.write_bytes(broken)
        with pytest.raises(MfrecError, match="r.csv"):
            read_interactions(path)
        _one_line_error(capsys, ["data", "info", path], path.name)


# ------------------------------------------------------------------------------------- defect 11: separators, names
def test_a_typed_backslash_t_means_tab(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("user\titem\trating\n1\t2\t3\n")
    assert read_interactions(path, sep="\\t").nnz == 1


@pytest.mark.parametrize("argv, needle", [
    (["--sep", ";;"], "one character"),
    (["--sep", ""], "one character"),
    (["--no-header", "--names", "user,user,rating"], "given twice"),
    (["--no-header", "--names", "user,,rating"], "non-empty"),
])
def test_bad_separators_and_names_are_one_line(capsys, csv, argv, needle):
    _one_line_error(capsys, ["data", "info", csv, *argv], needle)


def test_a_wrong_separator_mentions_sep(tmp_path, capsys):
    path = tmp_path / "semi.csv"
    path.write_text("user;item;rating\n1;2;3\n1;3;4\n")
    _one_line_error(capsys, ["data", "info", path, "--sep", ","], "--user", "--sep")


def test_the_separator_is_sniffed_when_none_is_given(tmp_path):
    for sep in (";", "\t", "|"):
        path = tmp_path / "r.csv"
        path.write_text(sep.join(["user", "item", "rating"]) + "\n" + sep.join(["1", "2", "3"]) + "\n"
                        + sep.join(["1", "3", "4"]) + "\n")
        data = read_interactions(path)
        assert data.nnz == 2 and data.matrix.max() == 4


# ------------------------------------------------------------------------------------- defect 13: the heat map
def test_tune_heatmap_with_one_searched_parameter(tmp_path, capsys, csv):
    out = tmp_path / "heat.png"
    assert main(["tune", str(csv), "--model", "explicit-als", "factors=2,4", "iterations=2", "--cv", "2",
                 "--plot", str(out), "--quiet"]) == 0
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------------- defect 14: output paths
@pytest.mark.parametrize("out, needle", [("", "empty"), ("{dir}/a-file/x.mfrec", "is a file"), ("{dir}", "folder")])
def test_output_paths_are_checked_before_training(tmp_path, capsys, csv, out, needle):
    (tmp_path / "a-file").write_text("x")
    out = out.replace("{dir}", str(tmp_path))
    started = time.perf_counter()
    _one_line_error(capsys, ["train", csv, "--model", "implicit-als", "iterations=50", "factors=64", "--out", out],
                    "--out", needle)
    assert time.perf_counter() - started < 5  # refused before the fit, not after it


def test_a_full_disk_at_save_is_one_line(tmp_path, capsys, csv, monkeypatch):
    import os

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    _one_line_error(capsys, ["train", csv, "--model", "popularity", "--out", tmp_path / "m.mfrec"],
                    "No space left on device")


# ------------------------------------------------------------------------------------- defect 15: host and port
def test_serve_refuses_a_host_that_does_not_resolve(capsys, tmp_path):
    pytest.importorskip("uvicorn")
    model = ImplicitALS(factors=2, iterations=1).fit(planted_interactions())
    path = model.save(tmp_path / "m.mfrec")
    _one_line_error(capsys, ["serve", path, "--host", "no-such-host.invalid"], "does not resolve")


def test_serve_refuses_a_port_in_use(capsys, tmp_path):
    pytest.importorskip("uvicorn")
    import socket

    model = ImplicitALS(factors=2, iterations=1).fit(planted_interactions())
    path = model.save(tmp_path / "m.mfrec")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(capsys, ["serve", path, "--port", port], f"cannot listen on 127.0.0.1:{port}")


# ------------------------------------------------------------------------------------- defect 17: value ranges
def test_a_timestamp_of_1e30_is_refused(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("user,item,rating,timestamp\n1,2,3,100\n1,3,4,1e30\n")
    _one_line_error(capsys, ["data", "info", path], "line 3", "timestamp", "out of range")


def test_a_rating_beyond_float32_names_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n1,3,1e39\n")
    _one_line_error(capsys, ["data", "info", path], "r.csv, line 3", "'rating'", "out of range")


# ------------------------------------------------------------------------------------- generated malformed text
@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400),
       suffix=st.sampled_from([".csv", ".tsv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".parquet"]))
def test_any_bytes_are_read_or_refused_with_one_mfrec_error(tmp_path, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(body)
    try:
        read_interactions(path)
    except (InvalidDataError, InvalidParameterError, MfrecError):
        pass


@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.one_of(st.text(max_size=6), st.floats(), st.integers()), min_size=1, max_size=5),
                     min_size=1, max_size=12),
       sep=st.sampled_from([",", ";", "\t", "|"]))
def test_any_table_is_read_or_refused_with_one_mfrec_error(tmp_path, rows, sep):
    path = tmp_path / "fuzz.csv"
    text = "\n".join(sep.join(str(v) for v in row) for row in [["user", "item", "rating"], *rows])
    path.write_text(text, encoding="utf-8", errors="surrogatepass" if False else "strict")
    try:
        read_interactions(path, sep=sep)
    except (InvalidDataError, InvalidParameterError, MfrecError):
        pass


def test_the_first_line_of_a_file_that_is_not_interactions_is_not_echoed(tmp_path, capsys):
    secret = "root:$6$Zq0ab8sLongSaltedHashOfAPasswordThatMustNotBeEchoed:19000:0:99999:7:::"
    path = tmp_path / "shadow.csv"
    path.write_text(secret + "\ndaemon:*:19000:0:99999:7:::\n")
    line = _one_line_error(capsys, ["data", "info", path], "no user column")
    assert "PasswordThatMustNotBeEchoed" not in line


def test_repeated_ratings_are_re_ratings_for_rating_models_and_amounts_otherwise(tmp_path, capsys):
    """4 + 5 + 3 used to train an explicit model on a rating of 12; the latest rating now counts."""
    path = tmp_path / "r.csv"
    rows = ["user,item,rating,timestamp", "1,2,4,10", "1,2,5,30", "1,2,3,20", "2,2,1,10", "2,3,2,10", "1,3,2,10"]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.mfrec"
    assert main(["train", str(path), "--model", "biases", "--out", str(out), "--json"]) == 0
    model = __import__("mfrec").load(out)
    assert model.interactions_.matrix.max() == 5.0  # the latest (t=30), not 12
    capsys.readouterr()
    assert main(["data", "info", str(path), "--json"]) == 0  # counts and plays add up
    assert '"max": 12' in capsys.readouterr().out.replace(".0", "")

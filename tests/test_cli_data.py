"""`mfrec data info` end to end, through a real subprocess (what a user sees)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfrec", *args], capture_output=True, text=True, timeout=300)


def test_nan_rating_exits_2_with_one_line_naming_the_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n1,1,5\n1,2,4\n2,1,nan\n2,3,1\n")
    result = run_cli("data", "info", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "line 4" in lines[0] and "'rating'" in lines[0] and str(path) in lines[0]


def test_info_json_on_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,rating,timestamp\na,x,5,0\na,y,3,86400\nb,x,4,172800\n")
    result = run_cli("data", "info", str(path), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["users"], info["items"], info["interactions"]) == (2, 2, 3)
    assert info["values"]["histogram"] == {"3": 1, "4": 1, "5": 1}
    assert info["time_span"]["days"] == pytest.approx(2.0)


def test_info_text(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("u1\ti1\nu1\ti2\nu2\ti1\n")
    result = run_cli("data", "info", str(path), "--no-header", "--names", "user,item")
    assert result.returncode == 0, result.stderr
    assert "users         2" in result.stdout and "interactions  3" in result.stdout


def test_missing_file_is_one_line(tmp_path):
    result = run_cli("data", "info", str(tmp_path / "nope.csv"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no such file" in result.stderr

"""README's Python tour runs as written (a newcomer's first contact), and its offline errors say what to do."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import REPO, shared_dataset
from mfrec import DatasetError
from mfrec.cli import main


def _tour() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A five-minute tour", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_tour_runs_verbatim(tmp_path, monkeypatch):
    data = shared_dataset("ml-100k").parent
    code = _tour()
    assert 'data_dir="../shared/data"' in code
    # the tour is written for a checkout beside ../shared; run it from a folder where that path holds
    work = tmp_path / "checkout"
    work.mkdir()
    (tmp_path / "shared").symlink_to(data.parent)
    monkeypatch.chdir(work)
    namespace: dict = {}
    exec(compile(code, "README.md (tour)", "exec"), namespace)  # noqa: S102 - our own README
    assert Path("ml100k.mfrec").is_file()
    assert namespace["same"].get_params() == namespace["model"].get_params()


def test_the_offline_error_names_data_dir_and_the_cache_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MFREC_DATA", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert main(["data", "info", "ml-100k"]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "$MFREC_DATA" in err and str(tmp_path / "cache") in err
    from mfrec import datasets

    with pytest.raises(DatasetError, match="data_dir="):
        datasets.load("ml-100k")
    assert os.environ["MFREC_DATA"].endswith("cache")

"""The scripts in benchmarks/ are not run by the suite (they take minutes and need the peers' libraries), but
they must at least compile: a broken script is found here, not by the next person who needs its numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_there_are_benchmark_scripts():
    assert any(p.name == "side_by_side.py" for p in SCRIPTS)

"""Progress events: models report each iteration, searches each fitted fold; nothing happens without a listener."""

from __future__ import annotations

import io

import mfrec
from mfrec._progress import listen, report, tqdm_listener


def test_no_listener_is_a_no_op():
    report("iteration", iteration=1)  # must not raise or print


def test_models_report_every_iteration():
    data = mfrec.datasets.synthetic(n_users=60, n_items=40, seed=1).interactions
    for model in (mfrec.ImplicitALS(factors=3, iterations=4), mfrec.ExplicitALS(factors=3, iterations=4),
                  mfrec.SGDFactorization(factors=3, epochs=4)):
        events = []
        with listen(events.append):
            model.fit(data)
        assert events[0] == {"kind": "start", "model": type(model).__name__, "total": 4}  # the bar starts at once
        events = events[1:]
        assert [e["iteration"] for e in events] == [1, 2, 3, 4]
        assert all(e["kind"] == "iteration" and e["total"] == 4 and "loss" in e for e in events)


def test_search_reports_each_fold():
    data = mfrec.datasets.synthetic(n_users=60, n_items=40, seed=1).interactions
    events = []
    with listen(events.append):
        mfrec.GridSearch(mfrec.Popularity(), {"by": ["count", "sum"]}, metric="ndcg@10", cv=2).fit(data)
    tasks = [e for e in events if e["kind"] == "task"]
    assert [e["done"] for e in tasks] == [1, 2, 3, 4] and tasks[-1]["total"] == 4


def test_tqdm_listener_draws_only_its_kind(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    with tqdm_listener("iteration", "training", enabled=True):
        report("task", done=1, total=1)
        for i in range(3):
            report("iteration", iteration=i + 1, total=3, loss=1.0 / (i + 1))
    text = buffer.getvalue()
    assert "training" in text and "3/3" in text
    quiet = io.StringIO()
    monkeypatch.setattr("sys.stderr", quiet)
    with tqdm_listener("iteration", "training", enabled=False):
        report("iteration", iteration=1, total=1)
    assert quiet.getvalue() == ""

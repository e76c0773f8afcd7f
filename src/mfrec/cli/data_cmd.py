"""``mfrec data info``: what a dataset or interaction file holds."""

from __future__ import annotations

import argparse
from typing import Any

from mfrec.cli._common import add_data_arguments, load_data, print_json


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect interaction data")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    info = data_sub.add_parser(
        "info",
        help="users, items, interactions, density, value histogram, activity quantiles, time span",
        description="Summarize a dataset (by name) or an interaction file (CSV/TSV/Parquet).",
    )
    add_data_arguments(info)
    info.add_argument("--json", action="store_true", help="print JSON for machines")
    info.set_defaults(func=info_command)


def info_command(args: argparse.Namespace) -> int:
    interactions, dataset = load_data(args)
    summary = interactions.describe()
    summary = {"source": args.data} | summary
    if dataset is not None:
        summary["dataset"] = {"name": dataset.name, "kind": getattr(dataset, "kind", None)}
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def _quantile_line(q: dict[str, float]) -> str:
    keys = ("p0", "p25", "p50", "p75", "p90", "p99", "p100")
    return "  ".join(f"{k.replace('p0', 'min') if k == 'p0' else ('max' if k == 'p100' else k)}={q[k]:g}" for k in keys) + (
        f"  mean={q['mean']:.2f}"
    )


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of :meth:`Interactions.describe` output."""
    lines = [
        f"source        {s['source']}",
        f"users         {s['users']:,}",
        f"items         {s['items']:,}",
        f"interactions  {s['interactions']:,}",
        f"density       {s['density']:.4%}",
    ]
    v = s["values"]
    if v["given"]:
        lines.append(f"values        min={v['min']:g}  max={v['max']:g}  mean={v['mean']:.3f}")
    else:
        lines.append("values        none given (each interaction counts 1; repeated rows add up)")
    total = max(1, s["interactions"])
    width = max((len(k) for k in v["histogram"]), default=1)
    lines.append("histogram")
    for label, count in v["histogram"].items():
        bar = "#" * max(1 if count else 0, round(40 * count / total))
        lines.append(f"  {label:>{width}}  {count:>10,}  {bar}")
    lines.append(f"per user      {_quantile_line(s['per_user'])}")
    lines.append(f"per item      {_quantile_line(s['per_item'])}")
    if "time_span" in s:
        t = s["time_span"]
        lines.append(f"time span     {t['start']} .. {t['end']}  ({t['days']:.1f} days)")
    if "events" in s:
        lines.append("events        " + ", ".join(f"{k}={c:,}" for k, c in s["events"].items()))
    return "\n".join(lines)

"""``mfrec demo``: the main job, offline on the synthetic dataset (or a real one with --dataset/--data-dir)."""

from __future__ import annotations

import argparse

from mfrec.cli._common import print_json
from mfrec.cli.data_cmd import format_summary


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the demo offline on the synthetic dataset")
    demo.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic, offline)")
    demo.add_argument("--data-dir", help="folder with the dataset files")
    demo.add_argument("--json", action="store_true", help="print JSON for machines")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from mfrec import datasets

    if args.dataset == "synthetic":
        dataset = datasets.synthetic()
    else:
        dataset = datasets.load(args.dataset, data_dir=args.data_dir)
    summary = {"source": dataset.name} | dataset.interactions.describe()
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0

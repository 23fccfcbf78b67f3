"""``ngl demo``: the main job. The default benchmark grid (digits and digits with 20% label noise x
cnn_small x every registered loss x 5 seeds) and its report, next to the published table."""
from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from .bench import add_arguments, layers

    p = sub.add_parser(
        "demo", help="run the default benchmark grid and its report (what 'make demo' runs)",
        description="Every registered loss vs CE on scikit-learn's embedded digits, clean and with 20% "
                    "symmetric label noise, cnn_small, 5 seeds: about 70 short runs, under 10 minutes "
                    "on 2 CPU cores. Writes OUT/results.sqlite (rerun to resume), OUT/report/"
                    "{report.md,.csv,.json,*.png} and prints the table beside the published one. "
                    "Same as 'ngl bench --out runs/demo --published'; all 'ngl bench' flags apply "
                    "(here --out defaults to runs/demo and --published is on).")
    add_arguments(p)
    p.set_defaults(func=run, parser=p, layers=layers, out="runs/demo", published=True)
    for action in p._actions:              # noqa: SLF001 - the help of the two defaults changed here
        if action.dest in ("out", "published"):
            action.help = action.help.replace("(default: runs/bench)", "(default: runs/demo)") \
                .replace("(default: False)", "(default: True)")


def run(args: argparse.Namespace) -> int:
    from .bench import run_bench
    return run_bench(args, title="ngl demo: every registered loss vs CE")

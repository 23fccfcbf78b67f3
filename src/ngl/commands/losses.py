"""``ngl losses``: list the registered losses (the same registry the tests and the report use)."""
from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("losses", help="list the registered losses and their hyperparameters",
                       description="List every registered loss: its name (use it with --loss), the "
                                   "label of the paper's table, its per-class expression over p and "
                                   "y, hyperparameter defaults and reference.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--published", action="store_true", help="only the losses of the paper's comparison")
    p.set_defaults(func=run)


def _rows(published: bool) -> list[dict]:
    from ..expr import to_infix
    from ..losses import get_loss_info, list_losses

    rows = []
    for name in list_losses(published=True if published else None):
        info = get_loss_info(name)
        rows.append({"name": name, "label": info.label, "summary": info.summary,
                     "expression": to_infix(info.expression) if info.expression else None,
                     "hparams": {k: v for k, v in info.hparams.items() if k not in ("weight", "reduction", "ignore_index")},
                     "reference": info.reference, "published": info.published})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = _rows(args.published)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        hp = ", ".join(f"{k}={v}" for k, v in r["hparams"].items())
        print(f"{r['name']:<{width}}  {r['label']:<9} {r['summary']}")
        print(f"{'':<{width}}  {'':<9} hyperparameters: {hp or '-'}; {r['reference']}")
    print("\nAlso accepted wherever a loss is named: a saved expression file (*.json) or 'expr:<infix>'.")
    return 0

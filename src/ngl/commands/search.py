"""``ngl search``: genetic programming over loss expressions, scored by short training runs, then
the winners validated on fresh seeds (``ngl search validate OUT`` re-runs that step alone).

The flags come from :class:`ngl.search.config.SearchConfig`'s fields (:func:`ngl.config.
add_config_arguments`); ``--config FILE`` is a layer under them, so a flag given on the command
line always wins, even at its default value. Building this parser does not import DEAP.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_config_arguments
from ..errors import require_extra
from ..fileio import read_json_object

__all__ = ["register", "run", "run_validate", "config_from_args"]

_DESCRIPTION = (
    "Tree GP (DEAP) over loss expressions in p (predicted probability) and y (target). Each "
    "candidate passes a rejection screen, a canonical-form cache, then a short training run whose "
    "final validation accuracy is its fitness (default task: digits with 40% label noise, clean "
    "validation, an MLP; noisy labels leave room above CE). Offspring that duplicate a member of "
    "the population are varied again. Every generation is checkpointed; --resume continues. At "
    "the end CMA-ES tunes the best structures' constants and the top losses are retrained with "
    "CE, NGL and SCE on fresh seeds on the search task and a transfer task (another noise level "
    "and model), with paired tests (Holm-corrected). Outputs in --out: hall_of_fame/NN.json, "
    "generations.csv/.png, result.json, validation/report.md.")


def register(sub: argparse._SubParsersAction) -> None:
    from ..search.config import SearchConfig

    p = sub.add_parser("search", help="search for new loss functions with genetic programming",
                       description=_DESCRIPTION)
    add_config_arguments(p, SearchConfig)
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory (default: runs/search)")
    o.add_argument("--config", default=None,
                   help="JSON file of SearchConfig fields, a layer under the flags")
    o.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.json")
    o.add_argument("--overwrite", action="store_true",
                   help="start over even if OUT holds a search checkpoint")
    o.add_argument("--quiet", action="store_true", help="no progress bar or per-generation lines")
    p.set_defaults(func=run, parser=p, layers=_layers)
    inner = p.add_subparsers(dest="search_command", metavar="[validate OUT]")
    v = inner.add_parser("validate", help="retrain a finished search's winners on fresh seeds",
                         description="Retrain the top hall-of-fame losses with CE, NGL and SCE on "
                                     "fresh seeds, on the search task and the transfer task; "
                                     "resumable (OUT/validation/results.sqlite).")
    v.add_argument("out_dir", metavar="OUT", help="a finished search's output directory")
    v.add_argument("--top", type=int, default=None, help="losses to validate (default: the search's)")
    v.add_argument("--seeds", type=int, default=None, help="fresh seeds per cell (default: the search's)")
    v.add_argument("--executor", default="auto", help="auto | inline | process | ray (default: auto)")
    v.add_argument("--workers", type=int, default=None, help="parallel runs (default: the search's)")
    v.add_argument("--quiet", action="store_true", help="no per-run lines")
    v.set_defaults(func=run_validate, layers=None)


def _layers(args: argparse.Namespace) -> list[dict]:
    """The ``--config`` file as a layer of defaults under the command line."""
    return [read_json_object(Path(args.config), what="search config")] if args.config else []


def config_from_args(args: argparse.Namespace):
    """A SearchConfig from the parsed flags (the ``--config`` layer is already in them)."""
    from dataclasses import fields

    from ..search.config import SearchConfig

    return SearchConfig.from_dict({f.name: getattr(args, f.name) for f in fields(SearchConfig)})


def run(args: argparse.Namespace) -> int:
    require_extra("deap", "search", what="ngl search")
    from ..search import run_search
    from ..search.validate import validate_search

    config = config_from_args(args)
    result = run_search(config, args.out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.quiet, log=None if args.quiet else print)
    best = result.hall_of_fame[0] if result.hall_of_fame else None
    if not best:
        print("no candidate passed the screen and trained successfully")
        return 0
    print(f"best: {best['infix']}  (final validation accuracy {best['fitness']:.4f})")
    if config.validate_top > 0:
        report = validate_search(args.out, executor=config.executor, workers=config.workers,
                                 echo=None if args.quiet else print)
        print(report["headline"])
    print(f"hall of fame: {Path(args.out) / 'hall_of_fame'}/00.json ...; try: "
          f"ngl bench --losses ce,{Path(args.out) / 'hall_of_fame' / '00.json'}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    require_extra("deap", "search", what="ngl search validate")
    from ..search.validate import validate_search

    report = validate_search(args.out_dir, top=args.top, seeds=args.seeds, executor=args.executor,
                             workers=args.workers, echo=None if args.quiet else print)
    print(report["headline"])
    return 0

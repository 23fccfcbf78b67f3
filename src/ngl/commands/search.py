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
    from ..execution import Execution
    from ..runspec import TrainConfig
    from ..search.config import (DEFAULT_TASK, DEFAULT_TASK2, DEFAULT_TRANSFER, SUBTASK_FIELDS, SUBTASKS,
                                 TASK_SKIP, SearchConfig)

    p = sub.add_parser("search", help="search for new loss functions with genetic programming",
                       description=_DESCRIPTION)
    groups: dict = {}
    add_config_arguments(p, SearchConfig, groups=groups)
    add_config_arguments(p, TrainConfig, skip=TASK_SKIP, defaults=DEFAULT_TASK.to_dict(),
                         group="fitness task (TrainConfig fields, as ngl train)", groups=groups)
    add_config_arguments(p, TrainConfig, only=SUBTASK_FIELDS, defaults=DEFAULT_TASK2.to_dict(),
                         prefix=SUBTASKS["task2"], group="second fitness task (--task2-dataset none: "
                         "none)", groups=groups)
    add_config_arguments(p, TrainConfig, only=SUBTASK_FIELDS, defaults=DEFAULT_TRANSFER.to_dict(),
                         prefix=SUBTASKS["transfer"], group="transfer task of the validation", groups=groups)
    add_config_arguments(p, Execution, groups=groups)
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory (default: runs/search)")
    o.add_argument("--config", default=None,
                   help="JSON file of SearchConfig fields (a search's config.json works), a layer "
                        "under the flags")
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
    v.add_argument("--seeds", type=int, default=None,
                   help="fresh report seeds per cell (default: the search's --validate-seeds)")
    v.add_argument("--select-seeds", type=int, default=None,
                   help="fresh seeds to choose among the top losses (default: the search's)")
    add_config_arguments(v, Execution, defaults=dict.fromkeys(("executor", "workers", "threads")),
                         group="execution (default: the search's)")
    v.add_argument("--quiet", action="store_true", help="no per-run lines")
    v.set_defaults(func=run_validate, layers=None)


def _layers(args: argparse.Namespace) -> list[dict]:
    """The ``--config`` file (nested as config.json saves it, or flat flag names) as a layer of
    defaults under the command line."""
    from ..search.config import flat_layer

    return [flat_layer(read_json_object(Path(args.config), what="search config"))] if args.config else []


def config_from_args(args: argparse.Namespace):
    """A SearchConfig from the parsed flags (the ``--config`` layer is already in them)."""
    from ..search.config import SearchConfig

    skip = {"command", "func", "parser", "layers", "given", "out", "config", "resume", "overwrite",
            "quiet", "search_command"}
    return SearchConfig.from_flat({k: v for k, v in vars(args).items() if k not in skip})


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
    from ..expr import readable_infix

    print(f"best by search fitness: {readable_infix(best['infix'])}  (fitness {best['fitness']:.4f})")
    chosen = "the best by search fitness"
    if config.validate_top > 0:
        report = validate_search(args.out, echo=None if args.quiet else print)
        print(report["headline"])
        chosen = "the loss validation chose"
    top = Path(args.out) / "hall_of_fame" / "00.json"
    print(f"{top}: {chosen}; try: ngl bench --losses ce,{top}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    require_extra("deap", "search", what="ngl search validate")
    from ..search.validate import validate_search

    report = validate_search(args.out_dir, top=args.top, seeds=args.seeds, select_seeds=args.select_seeds,
                             execution=_validation_execution(args), echo=None if args.quiet else print)
    print(report["headline"])
    return 0


def _validation_execution(args: argparse.Namespace):
    """The search's :class:`~ngl.execution.Execution` with the flags given to ``validate``."""
    import dataclasses

    from ..execution import Execution
    from ..search.validate import load_search

    base = load_search(Path(args.out_dir))[0].execution
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Execution)
             if getattr(args, f.name) is not None}
    return dataclasses.replace(base, **given).check()

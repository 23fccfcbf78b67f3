"""``ngl search``: genetic programming over loss expressions, scored by short training runs."""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..fileio import read_json_object

__all__ = ["register", "run", "config_from_args"]


def _defaults() -> dict:
    from ..search import SearchConfig

    return SearchConfig().to_dict()


def _fitness_names() -> list[str]:
    from ..search import FITNESS_FUNCTIONS

    return list(FITNESS_FUNCTIONS)


def _executor_names() -> list[str]:
    from ..executors import EXECUTORS

    return list(EXECUTORS)


def register(sub: argparse._SubParsersAction) -> None:
    d = _defaults()
    p = sub.add_parser(
        "search", help="search for new loss functions with genetic programming",
        description="Tree GP (DEAP) over loss expressions in p (predicted probability) and y (target). "
                    "Each candidate passes a rejection screen (uses p and y, finite values and "
                    "gradients, minimising it raises the true-class probability), a canonical-form "
                    "cache, then a short training run whose validation accuracy is its fitness. "
                    "Every generation is checkpointed; --resume continues. Outputs in --out: "
                    "hall_of_fame/NN.json (use with 'ngl bench --losses' or "
                    "ngl.losses.from_expression), generations.csv/.png, result.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("genetic programming (defaults after EvoMAL)")
    g.add_argument("--population", type=int, default=d["population"], help="individuals per generation")
    g.add_argument("--generations", type=int, default=d["generations"], help="generations after the initial one")
    g.add_argument("--tournament-size", type=int, default=d["tournament_size"], help="tournament selection size")
    g.add_argument("--crossover", type=float, default=d["crossover"], help="crossover probability")
    g.add_argument("--mutation", type=float, default=d["mutation"], help="mutation probability")
    g.add_argument("--max-height", type=int, default=d["max_height"], help="maximum tree height (DEAP: a leaf is 0)")
    g.add_argument("--init-max-height", type=int, default=d["init_max_height"], help="maximum height of initial trees")
    g.add_argument("--init-tries", type=int, default=d["init_tries"],
                   help="draws per initial tree until one passes the screen (1: no screening)")
    g.add_argument("--elites", type=int, default=d["elites"], help="best individuals copied unchanged")
    g.add_argument("--hall-of-fame", type=int, default=d["hall_of_fame"], help="distinct best losses kept")
    g.add_argument("--primitives", default=None, help="comma-separated subset of operators (default: all)")
    g.add_argument("--seed-losses", default="", help="registry losses in the initial population, e.g. ce,ngl")
    g.add_argument("--seed", type=int, default=d["seed"], help="random seed of the search")
    f = p.add_argument_group("fitness")
    f.add_argument("--fitness", default=d["fitness"], choices=sorted(_fitness_names()),
                   help="train: short harness run; linear: softmax regression on digits (fast proxy)")
    f.add_argument("--dataset", default=d["dataset"], help="harness dataset (ngl.data.list_datasets())")
    f.add_argument("--model", default=d["model"], help="harness model (ngl.models.list_models())")
    f.add_argument("--data-dir", default=None, help="folder with the dataset files (harness default if unset)")
    f.add_argument("--max-steps", type=int, default=d["max_steps"], help="optimizer steps per fitness run")
    f.add_argument("--batch-size", type=int, default=d["batch_size"], help="batch size of fitness runs")
    f.add_argument("--lr", type=float, default=None, help="learning rate (default: the fitness function's)")
    f.add_argument("--train-fraction", type=float, default=d["train_fraction"], help="fraction of training data")
    f.add_argument("--train-seed", type=int, default=d["train_seed"], help="seed of each fitness run")
    f.add_argument("--device", default=d["device"], help="auto | cpu | cuda")
    f.add_argument("--threads", type=int, default=d["threads"], help="torch threads per fitness run")
    f.add_argument("--halving-rungs", type=int, default=d["halving_rungs"],
                   help="successive halving: >1 trains all new candidates briefly, the best 1/eta longer")
    f.add_argument("--halving-eta", type=int, default=d["halving_eta"], help="successive-halving factor")
    s = p.add_argument_group("rejection screen")
    s.add_argument("--screen-steps", type=int, default=d["screen_steps"], help="Adam steps over free logits")
    s.add_argument("--screen-min-gain", type=float, default=d["screen_min_gain"],
                   help="required rise of the mean true-class probability")
    x = p.add_argument_group("execution")
    x.add_argument("--executor", default=d["executor"], choices=_executor_names(),
                   help="where fitness runs go (inline ignores --timeout)")
    x.add_argument("--workers", type=int, default=d["workers"], help="parallel fitness runs")
    x.add_argument("--timeout", type=float, default=None, help="seconds per fitness run (then worst fitness)")
    x.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory")
    o.add_argument("--config", default=None, help="JSON file of SearchConfig fields; flags set to non-default values override it")
    o.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.json")
    o.add_argument("--quiet", action="store_true", help="no progress bar or per-generation lines")
    p.set_defaults(func=run)


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def config_from_args(args: argparse.Namespace, parser_defaults: dict | None = None) -> "object":
    """A SearchConfig from the flags (and the optional --config file underneath them)."""
    from ..search import SearchConfig

    names = {fl.name for fl in fields(SearchConfig)}
    base: dict = {}
    if args.config:
        path = Path(args.config)
        base = read_json_object(path, what="search config")
    defaults = _defaults()
    flags = {k: v for k, v in vars(args).items() if k in names}
    flags["primitives"] = _split(args.primitives)
    flags["seed_losses"] = _split(args.seed_losses) or []
    for key, value in flags.items():          # a flag left at its default does not override the file
        if key not in base or value != defaults.get(key):
            base[key] = value
    return SearchConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from ..search import run_search

    config = config_from_args(args)
    result = run_search(config, args.out, resume=args.resume, progress=not args.quiet,
                        log=None if args.quiet else print)
    best = result.hall_of_fame[0] if result.hall_of_fame else None
    if best:
        print(f"best: {best['infix']}  (validation accuracy {best['fitness']:.4f})")
        print(f"hall of fame: {Path(args.out) / 'hall_of_fame'}/00.json ... ; try: "
              f"ngl bench --losses ce,{Path(args.out) / 'hall_of_fame' / '00.json'}")
    else:
        print("no candidate passed the screen and trained successfully")
    return 0

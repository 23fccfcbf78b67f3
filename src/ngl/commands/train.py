"""``ngl train``: one training run of the harness (dataset x model x loss) with the paper's protocol."""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

from ..fileio import read_json_object

__all__ = ["register", "run", "config_from_args", "default_out"]


def _catalogue() -> str:
    from ..data import get_dataset_info, list_datasets
    from ..losses import list_losses
    from ..models import get_model_info, list_models

    lines = ["datasets (--dataset; also folder:PATH and npz:PATH):"]
    lines += [f"  {n:<21} {get_dataset_info(n).summary}; files: {get_dataset_info(n).files}"
              for n in list_datasets()]
    lines += ["models (--model; auto picks cnn_small up to 16 px, resnet_small above):"]
    lines += [f"  {n:<21} {get_model_info(n).summary}" for n in list_models()]
    lines += [f"losses (--loss): {', '.join(list_losses())}; or a *.json expression file, "
              f"or 'expr:<infix>' (see 'ngl losses')",
              "", "example: ngl train --dataset digits --model cnn_small --loss ngl --epochs 20 --seed 0",
              "exit status: 0 ok, 1 diverged or failed during training, 2 bad input or missing data"]
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    from ..config import add_config_arguments
    from ..runspec import TrainConfig

    p = sub.add_parser(
        "train", help="train a model on a dataset with a loss (the paper's protocol)",
        description="Train one model with one loss under the published protocol: Adam, "
                    "ReduceLROnPlateau on validation accuracy, zoom/shift/flip augmentation on flip-safe "
                    "datasets (none on your own data unless --augment), 10% validation hold-out. Datasets are read "
                    "from native files in --data-dir, never downloaded. Writes config.json, "
                    "history.csv/.json, result.json, learning_curve.png and checkpoint.pt (resumed when "
                    "the config matches) to --out. Settings: flag > --config file > default.",
        epilog_fn=_catalogue, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict = {}
    add_config_arguments(p, TrainConfig, groups=groups)
    x = groups["execution and output"]
    x.add_argument("--config", help="JSON file of TrainConfig fields (a run's config.json works); "
                                    "flags given override it")
    x.add_argument("--out", help="output folder (default runs/train/<dataset>_<model>_<loss>_s<seed>)")
    x.add_argument("--no-resume", action="store_true",
                   help="start afresh even if OUT/checkpoint.pt holds this config")
    x.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT even if its config differs or it finished")
    x.add_argument("--quiet", action="store_true", help="no progress bar, choices or per-epoch lines")
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run, parser=p, layers=_layers)


def _layers(args: argparse.Namespace) -> list[dict]:
    """The --config file as a layer of defaults (checked: known fields, right types)."""
    from ..config import from_mapping
    from ..runspec import TrainConfig

    if not args.config:
        return []
    doc = read_json_object(args.config, what="--config file")
    doc = {k: v for k, v in doc.items() if not k.startswith("resolved_")}
    from_mapping(TrainConfig, doc, what=f"--config file {args.config}")
    return [doc]


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of parsed arguments (flags over the --config file over the defaults)."""
    from ..runspec import TrainConfig

    return TrainConfig.from_dict({f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def default_out(cfg) -> Path:
    loss = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(cfg.loss).stem if cfg.loss.endswith(".json") else cfg.loss)
    data = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.dataset)
    return Path("runs/train") / f"{data}_{cfg.model}_{loss.strip('-')[:40]}_s{cfg.seed}"


def run(args: argparse.Namespace) -> int:
    from ..train import train

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_out(cfg)
    result = train(cfg, out_dir=out, progress=not args.quiet, resume=not args.no_resume,
                   overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        fmt = lambda v: "-" if v is None else f"{100 * v:.2f}%"   # noqa: E731
        print(f"{result.status}: test accuracy {fmt(result.test_accuracy)}, val {fmt(result.val_accuracy)} "
              f"(best {fmt(result.best_val_accuracy)}), {result.epochs_run} epochs, {result.steps} steps, "
              f"{result.wall_time:.1f} s -> {out}")
        if result.notes:
            print(f"notes: {', '.join(result.notes)}")
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
    return 0 if result.status == "ok" else 1

"""``ngl train``: one training run of the harness (dataset x model x loss) with the paper's protocol."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..fileio import read_json_object

__all__ = ["register", "run", "config_from_args"]

#: flag destination -> TrainConfig field, for the flags that map one to one
_FIELDS = ["dataset", "model", "loss", "epochs", "batch_size", "lr", "seed", "label_noise",
           "train_fraction", "val_fraction", "augment", "image_size", "data_dir", "device",
           "max_steps", "threads", "plateau_factor", "plateau_patience", "min_lr", "amp",
           "eval_batch_size", "restore_best"]


def _catalogue() -> str:
    from ..data import get_dataset_info, list_datasets
    from ..losses import list_losses
    from ..models import get_model_info, list_models

    lines = ["datasets (--dataset; also folder:PATH and npz:PATH):"]
    lines += [f"  {n:<21} {get_dataset_info(n).summary}; files: {get_dataset_info(n).files}"
              for n in list_datasets()]
    lines += ["models (--model):"] + [f"  {n:<21} {get_model_info(n).summary}" for n in list_models()]
    lines += [f"losses (--loss): {', '.join(list_losses())}; or a *.json expression file, "
              f"or 'expr:<infix>' (see 'ngl losses')",
              "", "example: ngl train --dataset digits --model cnn_small --loss ngl --epochs 20 --seed 0",
              "exit status: 0 ok, 1 diverged or failed during training, 2 bad input or missing data"]
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    from ..train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a model on a dataset with a loss (the paper's protocol)",
        description="Train one model with one loss under the published protocol: Adam, "
                    "ReduceLROnPlateau on validation accuracy, zoom/shift/flip augmentation (per-dataset "
                    "default), 10%% validation hold-out. Datasets are read from native files in "
                    "--data-dir, never downloaded. Writes config.json, history.csv/.json, result.json, "
                    "learning_curve.png and checkpoint.pt (resumed when the config matches) to --out.",
        epilog=_catalogue(), formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", help=f"dataset name, folder:PATH or npz:PATH (default {d.dataset})")
    g.add_argument("--model", help=f"model name (default {d.model})")
    g.add_argument("--loss", help=f"loss name, *.json expression file or 'expr:<infix>' (default {d.loss})")
    g.add_argument("--loss-kwargs", type=json.loads, metavar="JSON",
                   help="loss hyperparameters as JSON, e.g. '{\"gamma\": 1.5}'")
    g.add_argument("--data-dir", help="folder holding the dataset files (default $NGL_DATA_DIR or ./data)")
    h = p.add_argument_group("protocol")
    h.add_argument("--epochs", type=int, help=f"epochs (default {d.epochs}; the paper: 200)")
    h.add_argument("--batch-size", type=int, help=f"batch size (default {d.batch_size})")
    h.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    h.add_argument("--seed", type=int, help=f"seed of init, shuffling, augmentation, noise (default {d.seed})")
    h.add_argument("--label-noise", type=float, help="fraction of training labels flipped to a random other class")
    h.add_argument("--train-fraction", type=float, help="stratified fraction of the training split to use")
    h.add_argument("--val-fraction", type=float, help=f"validation hold-out of train (default {d.val_fraction})")
    h.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="zoom 0.2 / shift 0.1 / hflip augmentation (default: per dataset)")
    h.add_argument("--image-size", type=int, help="model input side; small images are upsampled "
                   "(default: the model's, e.g. 32 -> 256 for resnet50/inception_v3)")
    h.add_argument("--plateau-factor", type=float, help=f"ReduceLROnPlateau factor (default {d.plateau_factor})")
    h.add_argument("--plateau-patience", type=int, help=f"ReduceLROnPlateau patience (default {d.plateau_patience})")
    h.add_argument("--min-lr", type=float, help=f"ReduceLROnPlateau min_lr (default {d.min_lr})")
    h.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    h.add_argument("--restore-best", action=argparse.BooleanOptionalAction,
                   help="test accuracy of the best-validation epoch's weights, as Keras' "
                        "ModelCheckpoint(save_best_only=True) (default on); --no-restore-best: the last epoch's")
    x = p.add_argument_group("execution and output")
    x.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto (CUDA when present)")
    x.add_argument("--amp", action=argparse.BooleanOptionalAction, help="bf16 autocast on CUDA (default on)")
    x.add_argument("--threads", type=int, help="torch CPU threads")
    x.add_argument("--eval-batch-size", type=int, help=f"evaluation batch size (default {d.eval_batch_size})")
    x.add_argument("--config", help="JSON file of TrainConfig fields; flags given override it")
    x.add_argument("--out", help="output folder (default runs/train/<dataset>_<model>_<loss>_s<seed>)")
    x.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoint.pt matches")
    x.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """TrainConfig from defaults, then the --config file, then the flags that were given."""
    from ..train import TrainConfig

    base: dict = {}
    if args.config:
        base = read_json_object(args.config, what="--config file")
        base = {k: v for k, v in base.items() if not k.startswith("resolved_")}
    given = {f: getattr(args, f) for f in _FIELDS if getattr(args, f, None) is not None}
    if args.loss_kwargs is not None:
        if not isinstance(args.loss_kwargs, dict):
            raise ValueError("--loss-kwargs must be a JSON object")
        given["loss_kwargs"] = args.loss_kwargs
    return TrainConfig.from_dict({**base, **given})


def default_out(cfg) -> Path:
    loss = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(cfg.loss).stem if cfg.loss.endswith(".json") else cfg.loss)
    data = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.dataset)
    return Path("runs/train") / f"{data}_{cfg.model}_{loss.strip('-')[:40]}_s{cfg.seed}"


def run(args: argparse.Namespace) -> int:
    from ..train import train

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_out(cfg)
    result = train(cfg, out_dir=out, progress=not args.quiet, resume=not args.no_resume)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        fmt = lambda v: "-" if v is None else f"{100 * v:.2f}%"   # noqa: E731
        print(f"{result.status}: test accuracy {fmt(result.test_accuracy)}, val {fmt(result.val_accuracy)} "
              f"(best {fmt(result.best_val_accuracy)}), {result.epochs_run} epochs, {result.steps} steps, "
              f"{result.wall_time:.1f} s -> {out}")
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
    return 0 if result.status == "ok" else 1

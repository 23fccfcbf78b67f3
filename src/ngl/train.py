"""The training harness: one seeded run of (dataset, model, loss) under the published protocol.

>>> from ngl.train import TrainConfig, train
>>> result = train(TrainConfig(dataset="digits", model="mlp", epochs=2, threads=1), progress=False)
>>> result.status, result.epochs_run, result.test_accuracy > 0.8
('ok', 2, True)

Protocol (REFERENCE.md section 2): Adam (lr 1e-3), batch 128, ReduceLROnPlateau on validation
accuracy (factor 0.2, patience 5, min_lr 1e-4), zoom 0.2 / shift 0.1 / horizontal-flip augmentation
for flip-safe datasets, 10% of train held out for validation (random_state 42), images scaled to
[-1, 1]. A registered loss's ``penalty(model)`` (CE + L2) is added to every step's loss.

On data ngl does not know (``npz:``, ``folder:``) the defaults use no augmentation (never a flip:
it changes digits, text, handedness) and ``model="auto"`` picks the model by input size
(:func:`ngl.models.choose_model`); ``train`` prints both choices and why.

The run spec (:class:`~ngl.runspec.TrainConfig`, :class:`~ngl.runspec.RunResult`) lives in the
torch-free :mod:`ngl.runspec`; the harness's parts in :mod:`ngl.harness` (setup, loop, folder).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from .harness.folder import OutputError, prepare_out, start_state, write_config, write_outputs
from .harness.loop import evaluate, run_epochs
from .harness.setup import Preprocessor, resolve_device, setup
from .runspec import DEVICES, MAX_IMAGE_SIZE, RunResult, TrainConfig

__all__ = ["TrainConfig", "RunResult", "train", "evaluate", "setup", "resolve_device", "Preprocessor",
           "OutputError", "MAX_IMAGE_SIZE", "DEVICES"]


def train(config: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True,
          resume: bool = True, overwrite: bool = False) -> RunResult:
    """Train ``config.model`` on ``config.dataset`` with ``config.loss``; return a :class:`RunResult`.

    Raises a :class:`~ngl.errors.UserError` (one line) for a bad config, missing/corrupt data, or an
    output folder that cannot take the run, before any training. NaN/inf loss -> status
    ``"diverged"``; an exception inside the loop -> status ``"failed"`` with a one-line error.
    With ``out_dir``: config.json, history.csv/.json (each epoch), result.json, learning_curve.png,
    and an atomic checkpoint.pt each epoch from which the same config resumes (``resume=True``).
    A folder holding another config's run, or a finished run when ``resume=False``, is refused
    unless ``overwrite=True``.
    """
    cfg = config.check()
    t0 = time.perf_counter()
    out = prepare_out(out_dir, cfg, resume=resume, overwrite=overwrite)
    old_threads = torch.get_num_threads()
    try:
        run = setup(cfg)
        run.out, run.progress = out, progress
        if progress:
            for line in run.choice_lines():
                print(line, file=sys.stderr)
        if out is not None:
            write_config(run)
        state = start_state(run, resume=resume)
        result = run_epochs(run, state)
    finally:
        torch.set_num_threads(old_threads)
    result.wall_time = time.perf_counter() - t0
    if out is not None:
        write_outputs(run, result)
    return result

"""The training loop of one run: epochs of Adam steps, the validation-accuracy pass and the schedule
after each, the best weights kept (Keras' ``ModelCheckpoint(save_best_only=True)``), then the test
accuracy. A non-finite loss ends the run as ``diverged``; an exception inside the loop is recorded
as ``failed`` (one line), not raised."""
from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import Tensor, nn

from ..errors import UserError, one_line
from ..runspec import RunResult
from .folder import save_checkpoint, write_history
from .setup import Preprocessor, Run, RunState

__all__ = ["run_epochs", "train_one_epoch", "validation_accuracy", "evaluate"]


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x, y: Tensor, prep: Preprocessor, *, batch_size: int = 512,
             amp: bool = True) -> float | None:
    """Top-1 accuracy (fraction) of ``model`` on stored images ``x`` with labels ``y``; ``None``
    when there are no samples."""
    from ..data import take

    if len(y) == 0:
        return None
    model.train(False)                                      # inference mode: BN running stats, no dropout
    correct = torch.zeros((), dtype=torch.long, device=prep.device)
    for start in range(0, len(y), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(y)))
        xb = prep(take(x, idx) if not isinstance(x, Tensor) else x[start:start + batch_size], train=False)
        with _autocast(prep.device, amp):
            out = model(xb)
        correct += (out.argmax(1) == y[start:start + batch_size].to(prep.device)).sum()
    return correct.item() / len(y)


def validation_accuracy(run: Run) -> float | None:
    """Accuracy on the validation split (``None`` without one)."""
    return evaluate(run.model, run.data.x_val, run.data.y_val, run.prep,
                    batch_size=run.cfg.eval_batch_size, amp=run.cfg.amp)


def train_one_epoch(run: Run, state: RunState, epoch: int) -> tuple[float, float]:
    """One pass over the (shuffled) training split; returns ``(mean loss, accuracy)``. A non-finite
    loss stops the epoch early and is returned as it is (the caller marks the run diverged)."""
    cfg, device = run.cfg, run.device
    from tqdm.auto import tqdm

    from ..data import take

    run.model.train()
    y_train = run.data.y_train                     # on the device (CUDA: moved once in setup)
    n = len(y_train)
    perm = torch.randperm(n, generator=run.gen)
    if n % cfg.batch_size == 1 and n > 1:          # BatchNorm cannot train on one sample
        perm = perm[:-1]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen, sync_every = 0, 1 if device.type == "cpu" else 50
    bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}",
               disable=not run.progress, leave=False, unit="batch")
    for start in bar:
        idx = perm[start:start + cfg.batch_size]
        xb = run.prep(take(run.data.x_train, idx), train=True)
        yb = y_train[idx.to(y_train.device)]
        loss, logits = _step(run, xb, yb)
        state.steps += 1
        loss_sum += loss * len(idx)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(idx)
        if state.steps % sync_every == 0 and not math.isfinite(loss_sum.item()):
            break
        if cfg.max_steps is not None and state.steps >= cfg.max_steps:
            break
    bar.close()
    return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)


def _step(run: Run, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
    """One optimizer step; returns the detached loss and logits."""
    with _autocast(run.device, run.cfg.amp):
        logits = run.model(xb)
    loss = run.criterion(logits.float(), yb)
    penalty = getattr(run.criterion, "penalty", None)
    if penalty is not None:
        loss = loss + penalty(run.model)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss.detach(), logits.detach()


def _end_epoch(run: Run, state: RunState, epoch: int, train_loss: float, train_acc: float,
               t_epoch: float) -> None:
    """Validation accuracy, the schedule's step, the best weights, the log line, and the history
    and checkpoint written."""
    val = validation_accuracy(run)
    run.scheduler.step(val if val is not None else train_acc)
    if run.cfg.restore_best and val is not None and val > state.best_val:   # ModelCheckpoint(save_best_only)
        state.best_val = val
        state.best_model = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
    state.epoch = epoch
    state.history.append({"epoch": epoch, "loss": train_loss, "accuracy": train_acc,
                          "val_accuracy": val, "lr": run.optimizer.param_groups[0]["lr"],
                          "time": time.perf_counter() - t_epoch})
    if run.progress:
        from tqdm.auto import tqdm
        tqdm.write(f"epoch {epoch}/{run.cfg.epochs}: loss {train_loss:.4f} acc {train_acc:.4f} "
                   f"val {val if val is None else round(val, 4)} lr {state.history[-1]['lr']:.2g}")
    if run.out is not None:
        write_history(run.out, state.history)
        save_checkpoint(run, state)


def run_epochs(run: Run, state: RunState) -> RunResult:
    """Epochs from ``state.epoch + 1`` to ``cfg.epochs`` (or ``max_steps``), then the test split."""
    cfg, status, error = run.cfg, "ok", None
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if cfg.max_steps is not None and state.steps >= cfg.max_steps:
                break
            t_epoch = time.perf_counter()
            train_loss, train_acc = train_one_epoch(run, state, epoch)
            if not math.isfinite(train_loss):
                status, error = "diverged", f"diverged at epoch {epoch} (loss {train_loss})"
                break
            _end_epoch(run, state, epoch, train_loss, train_acc, t_epoch)
        test = None
        if status == "ok":
            if state.best_model is not None:
                run.model.load_state_dict(state.best_model)
            test = evaluate(run.model, run.data.x_test, run.data.y_test, run.prep,
                            batch_size=cfg.eval_batch_size, amp=cfg.amp)
        return _result(run, state, status, test, error)
    except (KeyboardInterrupt, MemoryError, UserError):
        raise
    except Exception as exc:                                # recorded, not a traceback
        return _result(run, state, "failed", None, one_line(exc))


def _result(run: Run, state: RunState, status: str, test: float | None, error: str | None) -> RunResult:
    history = state.history
    vals = [h["val_accuracy"] for h in history if h["val_accuracy"] is not None]
    notes = [n for n, missing in (("no_test_split", len(run.data.y_test) == 0),
                                  ("no_validation_split", len(run.data.y_val) == 0)) if missing]
    return RunResult(status, test, history[-1]["val_accuracy"] if history else None,
                     max(vals) if vals else None, len(history), state.steps, history, 0.0, error,
                     run.cfg.to_dict(), notes)

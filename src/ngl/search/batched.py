"""Population-batched training: many ``(loss, seed)`` runs of one harness task as one batched model.

>>> from ngl.train import TrainConfig
>>> task = TrainConfig(dataset="digits", model="mlp", max_steps=20, batch_size=64, threads=1)
>>> out = train_population(task, [("ce", 0), ("expr:square(p - y)", 0), ("ce", 1)])
>>> [(r.loss, r.seed, r.status, r.steps) for r in out]
[('ce', 0, 'ok', 20), ('expr:square(p - y)', 0, 'ok', 20), ('ce', 1, 'ok', 20)]

Each member is the harness run ``ngl.train.train(TrainConfig(**task, loss=spec, seed=seed))``,
step for step: the same data (``load_dataset`` with the member's seed: its own label-noise draw),
preprocessing, initialisation (``torch.manual_seed(seed)`` then ``build_model``), batch order
(a ``torch.Generator`` seeded with the seed, one ``randperm`` per epoch, a lone last sample
dropped), Adam, ReduceLROnPlateau on validation accuracy after every epoch, and ``max_steps``.
Its ``val_accuracy`` is the harness's ``RunResult.val_accuracy`` (the final epoch's).

The members share one forward and backward pass (:class:`~ngl.search.batched_parts.StackedModel`:
parameters stacked by ``torch.func.stack_module_state``, batched products that equal
``nn.Linear``'s bit for bit); each member's loss is computed on its own slice of the batched
logits and the losses are back-propagated together, so each member's parameters get only their
own gradient. On the CPU every member's history (loss, accuracy, validation accuracy and learning
rate of each epoch) equals the harness run's bit for bit. A member whose loss or logit gradient
turns non-finite leaves the batch at that step, before its update (status ``"diverged"``, with
the reason); the others go on unchanged. ``device="cuda"`` runs the same code (bf16 autocast when
``task.amp``, as the harness).

Tasks the engine cannot reproduce exactly (models other than ``mlp``, augmentation, lazily read
images, seeds whose training splits differ in size) raise :class:`BatchedUnsupported` (one line)
before training: the caller trains those members one at a time. For executors,
:func:`population_items` cuts the members into chunks and :func:`population_task` trains one
chunk (module level, picklable).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .batched_parts import (BatchedUnsupported, LossGroups, MemberSchedules, StackedAdam, StackedModel,
                            build_loss, loss_order)

__all__ = ["MemberResult", "BatchedUnsupported", "train_population", "population_fitness",
           "population_items", "population_task", "supports", "unsupported"]


@dataclass
class MemberResult:
    """One member's run, as the harness's ``RunResult`` reports it."""
    loss: str
    seed: int
    status: str                        # "ok" | "diverged"
    val_accuracy: float | None         # the final epoch's (None without a validation split)
    best_val_accuracy: float | None
    steps: int
    epochs_run: int
    reason: str | None = None          # why it diverged
    history: list[dict] = field(default_factory=list)   # per epoch: epoch, loss, accuracy, val_accuracy, lr

    @property
    def val_history(self) -> list[float | None]:
        return [h["val_accuracy"] for h in self.history]


Member = tuple[str, int]


def _check_members(members: Iterable[Sequence[Any]]) -> list[Member]:
    out = []
    for item in members:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InputError(f"a member is a (loss spec, seed) pair, got {item!r}")
        spec, seed = item
        if not isinstance(spec, str) or isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"a member is (loss spec: str, seed: int >= 0), got {item!r}")
        out.append((spec, seed))
    if not out:
        raise InputError("train_population needs at least one (loss spec, seed) member")
    return out


def population_items(task: Any, members: Iterable[Sequence[Any]], *, chunk_size: int | None = None,
                     device: str = "cpu") -> list[tuple[Any, list[Member], str]]:
    """One :func:`population_task` item per chunk of at most ``chunk_size`` members (all in one
    chunk by default), in order; the chunks' results, concatenated, are the members' results."""
    members = _check_members(members)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise InputError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")
    size = chunk_size or len(members)
    return [(task, members[i:i + size], device) for i in range(0, len(members), size)]


def population_task(item: tuple[Any, list[Member], str]) -> list[MemberResult]:
    """Executor task (module level, picklable): ``item = (task, members, device)`` from
    :func:`population_items`; trains that chunk."""
    task, members, device = item
    return train_population(task, members, device=device)


def train_population(task: Any, members: Iterable[Sequence[Any]], *, device: str = "cpu",
                     chunk_size: int | None = None, progress: bool = False) -> list[MemberResult]:
    """Train every ``(loss spec, seed)`` member on ``task`` (a ``TrainConfig``; its ``loss`` and
    ``seed`` are ignored, its ``loss_kwargs`` apply to every member's loss) as one batched model,
    ``chunk_size`` members at a time; results in the members' order.

    Raises :class:`BatchedUnsupported` when the task cannot be batched exactly, and a one-line
    :class:`~ngl.errors.UserError` for a bad task, loss spec or member.
    """
    from ..train import resolve_device

    task.check()
    dev = resolve_device(device)
    items = population_items(task, members, chunk_size=chunk_size, device=device)
    criteria = {spec: build_loss(spec, **task.loss_kwargs).to(dev) for _, chunk, _ in items for spec, _ in chunk}
    cache: dict[int, Any] = {}
    results: list[MemberResult] = []
    for _, chunk, _ in items:
        results += _train_chunk(task, chunk, dev, criteria, cache, progress)
    return results


def population_fitness(task: Any, infixes: Sequence[str], seeds: Sequence[int], *, device: str = "cpu",
                       chunk_size: int | None = None) -> list[float | None]:
    """The ``train`` fitness of each loss expression, batched: the mean final validation accuracy
    of its runs on ``seeds`` (every expression on the same seeds), None where one diverged.

    A CMA-ES generation of constants, or a GP generation, is one call:
    ``population_fitness(task, [E.to_infix(t) for t in trees], [0, 1])``.
    """
    seeds = list(seeds)
    results = train_population(task, [("expr:" + infix, s) for infix in infixes for s in seeds],
                               device=device, chunk_size=chunk_size)
    out: list[float | None] = []
    for i in range(len(infixes)):
        runs = results[i * len(seeds):(i + 1) * len(seeds)]
        ok = all(r.status == "ok" and r.val_accuracy is not None for r in runs)
        out.append(sum(r.val_accuracy for r in runs) / len(runs) if ok else None)
    return out


def unsupported(task: Any) -> str | None:
    """Why :func:`train_population` cannot train ``task`` exactly (``None``: it can: an MLP, no
    augmentation, data in memory, one training-split size), checked on seed 0's data."""
    if task.model != "mlp":
        return (f"model {task.model!r} is not an MLP: convolutions and BatchNorm under vmap would "
                f"not train exactly as the harness does")
    try:
        _load(task, [0], torch.device("cpu"), {})
    except BatchedUnsupported as exc:
        return str(exc)
    return None


def supports(task: Any) -> bool:
    """Whether :func:`train_population` trains ``task`` exactly (:func:`unsupported`)."""
    return unsupported(task) is None


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    """The members' data: inputs preprocessed once, one copy per distinct training set."""
    seeds: list[int]
    x: Tensor                # (U, N, ...) training inputs, U distinct copies
    x_of_seed: Tensor        # (S,) row of ``x`` for each seed
    y: Tensor                # (S, N) training labels (each seed's own label noise)
    xv: Tensor               # (Uv, Nv, ...) validation inputs
    xv_of_seed: Tensor
    yv: Tensor               # (S, Nv)
    num_classes: int
    image_shape: tuple[int, int, int]
    model: str
    image_size: int

    @property
    def n(self) -> int:
        return self.y.shape[1]


def _distinct(xs: list[Tensor]) -> tuple[Tensor, list[int]]:
    rows: list[int] = []
    copies: list[Tensor] = []
    for x in xs:
        same = next((j for j, c in enumerate(copies) if c.shape == x.shape and torch.equal(c, x)), None)
        if same is None:
            copies.append(x)
            same = len(copies) - 1
        rows.append(same)
    return torch.stack(copies), rows


def _choices(task: Any, split: Any) -> tuple[str, int]:
    """The model and input size the harness picks (``ngl.trainrun``); refuses augmentation."""
    from ..data.augment import parse_augment
    from ..models import choose_model, default_image_size

    _, h, w = split.image_shape
    model = choose_model(max(h, w))[0] if task.model == "auto" else task.model
    augment = parse_augment(task.augment if task.augment is not None else split.augment)
    if augment:
        raise BatchedUnsupported(f"augmentation ({','.join(augment)}) draws from the batch generator; "
                                 f"the batched engine trains without it only (augment='none')")
    return model, task.image_size or default_image_size(model, h)


def _load(task: Any, seeds: list[int], device: torch.device, cache: dict[int, Any]) -> _Data:
    from ..data import load_dataset
    from ..models import get_model_info
    from ..train import Preprocessor

    splits = []
    for s in seeds:
        if s not in cache:
            cache[s] = load_dataset(task.dataset, data_dir=task.data_dir, seed=s, val_fraction=task.val_fraction,
                                    train_fraction=task.train_fraction, label_noise=task.label_noise)
        splits.append(cache[s])
    if not all(isinstance(d.x_train, Tensor) and isinstance(d.x_val, Tensor) for d in splits):
        raise BatchedUnsupported(f"dataset {task.dataset!r} is read lazily from disk; the batched engine "
                                 f"needs it in memory")
    if len({len(d.y_train) for d in splits}) > 1:
        raise BatchedUnsupported("the seeds' training splits differ in size; train them one run at a time")
    model, size = _choices(task, splits[0])
    prep = Preprocessor(device=device, in_channels=get_model_info(model).in_channels, image_size=size,
                        augment=(), generator=torch.Generator())
    x, x_rows = _distinct([prep(d.x_train, train=False) for d in splits])
    xv, xv_rows = _distinct([prep(d.x_val, train=False) for d in splits])
    return _Data(seeds, x, torch.tensor(x_rows, device=device), torch.stack([d.y_train for d in splits]).to(device),
                 xv, torch.tensor(xv_rows, device=device), torch.stack([d.y_val for d in splits]).to(device),
                 splits[0].num_classes, splits[0].image_shape, model, size)


def _perms(gens: list[torch.Generator], n: int, batch_size: int, device: torch.device) -> Tensor:
    """Each seed's shuffled order of one epoch ``(S, n)``, as ``ngl.train.train_one_epoch`` draws it."""
    perm = torch.stack([torch.randperm(n, generator=g) for g in gens])
    if n % batch_size == 1 and n > 1:              # the harness drops a lone last sample (BatchNorm)
        perm = perm[:, :-1]
    return perm.to(device)


# --------------------------------------------------------------------------- the loop
def _train_chunk(task: Any, members: list[Member], device: torch.device, criteria: dict, cache: dict,
                 progress: bool) -> list[MemberResult]:
    from ..models import get_model_info

    order = sorted(range(len(members)), key=lambda i: (loss_order(members[i][0], criteria), members[i][1]))
    ordered = [members[i] for i in order]
    seeds = sorted({s for _, s in members})
    old_threads = torch.get_num_threads()
    try:
        data = _load(task, seeds, device, cache)
        threads = task.threads or (get_model_info(data.model).cpu_threads if device.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        pop = _Population(task, ordered, data, device, criteria)
        pop.run(progress)
    finally:
        torch.set_num_threads(old_threads)
    results = [pop.result(j) for j in range(len(ordered))]
    out: list[MemberResult | None] = [None] * len(members)
    for j, i in enumerate(order):
        out[i] = results[j]
    return out                                              # type: ignore[return-value]


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Population:
    """The alive members of one chunk: their stacked model, optimiser, schedules and records."""

    def __init__(self, task: Any, members: list[Member], data: _Data, device: torch.device,
                 criteria: dict) -> None:
        self.task, self.members, self.data, self.device, self.criteria = task, members, data, device, criteria
        self.alive = list(range(len(members)))
        seed_index = {s: k for k, s in enumerate(data.seeds)}
        self.seed_pos = torch.tensor([seed_index[s] for _, s in members], device=device)
        initial = {s: self._init(s) for s in data.seeds}
        self.model = StackedModel([initial[s] for _, s in members], name=data.model, device=device)
        self.adam = StackedAdam(list(self.model.params.values()), [task.lr] * len(members))
        self.schedules = MemberSchedules(len(members), lr=task.lr, factor=task.plateau_factor,
                                         patience=task.plateau_patience, min_lr=task.min_lr)
        self.losses = LossGroups([spec for spec, _ in members], criteria)
        self.history: list[list[dict]] = [[] for _ in members]
        self.steps = [0] * len(members)
        self.reason: list[str | None] = [None] * len(members)
        self.step_count = 0

    def _init(self, seed: int) -> torch.nn.Module:
        """The harness's initial model of ``seed`` (built on the CPU, as there)."""
        from ..models import build_model

        d = self.data
        torch.manual_seed(seed)
        return build_model(d.model, num_classes=d.num_classes, in_channels=d.image_shape[0],
                           image_size=d.image_size)

    def run(self, progress: bool) -> None:
        task, d = self.task, self.data
        gens = [torch.Generator().manual_seed(s) for s in d.seeds]
        from tqdm.auto import tqdm

        bar = tqdm(total=task.max_steps, disable=not progress, unit="step", leave=False)
        for epoch in range(1, task.epochs + 1):
            if (task.max_steps is not None and self.step_count >= task.max_steps) or not self.alive:
                break
            perm = _perms(gens, d.n, task.batch_size, self.device)
            self.loss_sum = torch.zeros(len(self.alive), device=self.device)
            self.correct = torch.zeros(len(self.alive), dtype=torch.long, device=self.device)
            self.seen = 0
            for start in range(0, perm.shape[1], task.batch_size):
                self._step(perm[:, start:start + task.batch_size], epoch)
                bar.update()
                if (task.max_steps is not None and self.step_count >= task.max_steps) or not self.alive:
                    break
            if self.alive:
                self._end_epoch(epoch)
        bar.close()

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``(A, B, ...)`` and labels ``(A, B)`` of each alive member's batch."""
        d = self.data
        rows = idx.index_select(0, self.seed_pos)                              # (A, B) sample indices
        flat_x = (d.x_of_seed.index_select(0, self.seed_pos) * d.n).unsqueeze(1) + rows
        xb = d.x.flatten(0, 1).index_select(0, flat_x.flatten()).unflatten(0, rows.shape)
        yb = d.y.flatten().index_select(0, (self.seed_pos * d.n).unsqueeze(1).add(rows).flatten())
        return xb, yb.view(rows.shape)

    def _step(self, idx: Tensor, epoch: int) -> None:
        xb, yb = self._batch(idx)
        with _autocast(self.device, self.task.amp):
            logits = self.model(xb)
        logits = logits.float()
        roots, losses = self.losses(logits, yb, self.model)
        params = list(self.model.params.values())
        for p in params:
            p.grad = None
        torch.autograd.backward(roots)
        self.step_count += 1
        self.loss_sum += losses * yb.shape[1]
        self.correct += (logits.detach().argmax(-1) == yb).sum(-1)
        self.seen += yb.shape[1]
        grads = [p.grad for p in params]
        bad_loss = ~torch.isfinite(self.loss_sum)
        bad = bad_loss | ~torch.isfinite(self.model.logit_grad_sums()).all(1)
        if bool(bad.any()):
            rows = self._freeze(bad, bad_loss, epoch)
            grads = [g.index_select(0, rows) for g in grads]
        if self.alive:
            self.adam.step(list(self.model.params.values()), grads)

    def _freeze(self, bad: Tensor, bad_loss: Tensor, epoch: int) -> Tensor:
        """Record the members that turned non-finite and drop them, before their update."""
        means = (self.loss_sum / max(self.seen, 1)).tolist()
        keep = []
        for pos, (is_bad, loss_bad) in enumerate(zip(bad.tolist(), bad_loss.tolist())):
            j = self.alive[pos]
            if not is_bad:
                keep.append(pos)
                continue
            self.steps[j] = self.step_count
            self.reason[j] = (f"diverged at epoch {epoch} (loss {means[pos]})" if loss_bad
                              else f"diverged at epoch {epoch} (non-finite gradient)")
        rows = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.alive = [self.alive[p] for p in keep]
        self.seed_pos = self.seed_pos.index_select(0, rows)
        self.loss_sum, self.correct = self.loss_sum.index_select(0, rows), self.correct.index_select(0, rows)
        self.model.keep(rows)
        self.adam.keep(rows)
        self.schedules.keep(keep)
        if self.alive:
            self.losses = LossGroups([self.members[j][0] for j in self.alive], self.criteria)
        return rows

    @torch.no_grad()
    def _validate(self) -> list[float | None]:
        d, bs = self.data, self.task.eval_batch_size
        nv = d.yv.shape[1]
        if nv == 0:
            return [None] * len(self.alive)
        correct = torch.zeros(len(self.alive), dtype=torch.long, device=self.device)
        xv_rows = d.xv_of_seed.index_select(0, self.seed_pos)
        yv = d.yv.index_select(0, self.seed_pos)
        for start in range(0, nv, bs):
            xb = d.xv[:, start:start + bs].index_select(0, xv_rows)
            with _autocast(self.device, self.task.amp):
                out = self.model(xb)
            correct += (out.argmax(-1) == yv[:, start:start + bs]).sum(-1)
        return [c / nv for c in correct.tolist()]

    def _end_epoch(self, epoch: int) -> None:
        """Validate, step each member's schedule (on validation accuracy, else train accuracy), log."""
        vals = self._validate()
        seen = max(self.seen, 1)
        losses = [v / seen for v in self.loss_sum.tolist()]
        accs = [c / seen for c in self.correct.tolist()]
        lrs = self.schedules.step([v if v is not None else a for v, a in zip(vals, accs)])
        self.adam.lr = torch.tensor(lrs, dtype=torch.float64)
        for pos, j in enumerate(self.alive):
            self.history[j].append({"epoch": epoch, "loss": losses[pos], "accuracy": accs[pos],
                                    "val_accuracy": vals[pos], "lr": lrs[pos]})
            self.steps[j] = self.step_count

    def result(self, j: int) -> MemberResult:
        spec, seed = self.members[j]
        hist = self.history[j]
        vals = [h["val_accuracy"] for h in hist if h["val_accuracy"] is not None]
        last = hist[-1]["val_accuracy"] if hist else None
        status = "diverged" if self.reason[j] else "ok"
        if status == "ok" and last is not None and not math.isfinite(last):
            status = "diverged"
        return MemberResult(spec, seed, status, last, max(vals) if vals else None, self.steps[j],
                            len(hist), self.reason[j], hist)

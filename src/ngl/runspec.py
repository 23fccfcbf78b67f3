"""The run spec: what defines one training run, its checks and its identity. Imports no torch or numpy.

A run is one :class:`TrainConfig`, built once, checked once (:meth:`TrainConfig.check`: one bound
per field, here and nowhere else), keyed once (:func:`run_key`), and handed whole to the harness
(:func:`ngl.train.train`), a bench grid (:mod:`ngl.bench`) or the search's fitness task
(:class:`ngl.search.config.SearchConfig` holds one). Its fields generate ``ngl train``'s flags
(:func:`ngl.config.add_config_arguments`), so building a parser imports nothing heavy.

>>> cfg = TrainConfig(dataset="digits", model="mlp", epochs=2)
>>> cfg.check().epochs
2
>>> TrainConfig(label_noise=1.5).check()
Traceback (most recent call last):
...
ngl.errors.InputError: TrainConfig.label_noise must be in [0, 1), got 1.5
>>> run_key({"dataset": "digits", "loss": "expr:y*(p - 1)"}) == run_key({"loss": "expr:y * (p - 1)", "dataset": "digits"})
True
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .config import check_value, from_mapping, opt
from .errors import InputError

__all__ = ["TrainConfig", "RunResult", "DEVICES", "MAX_IMAGE_SIZE", "MAX_THREADS", "AUGMENT_PARTS",
           "IGNORED_IN_KEY", "is_expression_spec", "pin_loss", "pin_config", "canonical", "run_key",
           "parse_augment", "dataset_label"]

#: the largest ``image_size`` accepted (a side of 100,000 px would allocate terabytes)
MAX_IMAGE_SIZE = 2048
#: where a run trains: ``auto`` is CUDA when present, else the CPU
DEVICES = ("auto", "cpu", "cuda")
#: the most torch CPU threads a run may ask for (more than any machine has; 100,000 would fail late)
MAX_THREADS = 1024
#: the parts of the protocol's augmentation, in canonical order
AUGMENT_PARTS = ("flip", "shift", "zoom")
#: config fields that do not change a run's result (where or how fast it runs): not part of its key
IGNORED_IN_KEY = frozenset({"device", "threads", "data_dir"})

_WHAT, _PROTOCOL, _EXEC = "what to train", "protocol", "execution and output"
#: a class's resolved annotations, computed once (``get_type_hints`` is most of a check's cost)
_type_hints = functools.lru_cache(maxsize=None)(typing.get_type_hints)


def parse_augment(spec: bool | str) -> tuple[str, ...]:
    """The augmentation parts of ``spec``: a comma list of :data:`AUGMENT_PARTS`, ``"none"``, or a
    bool (``True``: the protocol's flip, shift and zoom; ``False``: none).

    >>> parse_augment("zoom, shift"), parse_augment(True), parse_augment("none")
    (('shift', 'zoom'), ('flip', 'shift', 'zoom'), ())
    """
    from .errors import InputTypeError

    if isinstance(spec, bool):
        return AUGMENT_PARTS if spec else ()
    if not isinstance(spec, str):
        raise InputTypeError(f"augment must be a comma list of {', '.join(AUGMENT_PARTS)} or 'none', "
                             f"got {spec!r} ({type(spec).__name__})")
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    if parts in ([], ["none"]):
        return ()
    for p in parts:
        if p not in AUGMENT_PARTS:
            raise InputError(f"unknown augmentation {p!r} in {spec!r}; expected a comma list of "
                             f"{', '.join(AUGMENT_PARTS)}, or none")
    return tuple(p for p in AUGMENT_PARTS if p in parts)


@dataclass
class TrainConfig:
    """Everything that defines a run; ``to_dict``/``from_dict`` round-trip through JSON. The fields
    (with their help) generate ``ngl train``'s flags."""
    dataset: str = opt("digits", "dataset name, folder:PATH or npz:PATH", group=_WHAT)
    model: str = opt("auto", "model name, or auto: cnn_small up to 16 px, resnet_small above",
                     group=_WHAT)
    loss: str = opt("ce", "loss name, *.json expression file or 'expr:<infix>'", group=_WHAT)
    loss_kwargs: dict = opt(help="loss hyperparameters as JSON, e.g. '{\"gamma\": 1.5}'",
                            factory=dict, group=_WHAT)
    data_dir: str | None = opt(None, "folder holding the dataset files (default: $NGL_DATA_DIR or ./data)",
                               group=_WHAT)
    epochs: int = opt(20, "training epochs; the paper used 200", group=_PROTOCOL)
    batch_size: int = opt(128, "batch size", group=_PROTOCOL)
    lr: float = opt(1e-3, "Adam learning rate", group=_PROTOCOL)
    seed: int = opt(0, "seed of init, shuffling, augmentation and label noise", group=_PROTOCOL)
    label_noise: float = opt(0.0, "fraction of training labels set to a random other class, in [0, 1)",
                             group=_PROTOCOL)
    train_fraction: float = opt(1.0, "stratified, seeded fraction of the training split to use",
                                group=_PROTOCOL)
    val_fraction: float = opt(0.1, "stratified validation hold-out of train (random_state 42)",
                              group=_PROTOCOL)
    augment: bool | str | None = opt(
        None, "comma list of flip, shift, zoom, or none (default: per dataset: the protocol's on "
              "flip-safe datasets such as CIFAR, none on digits and on npz:/folder: data)",
        group=_PROTOCOL, metavar="PARTS")
    image_size: int | None = opt(None, "model input side; small images are upsampled (default: the "
                                       "model's, e.g. 32 -> 256 for resnet50/inception_v3)", group=_PROTOCOL)
    plateau_factor: float = opt(0.2, "ReduceLROnPlateau factor", group=_PROTOCOL)
    plateau_patience: int = opt(5, "ReduceLROnPlateau patience (epochs)", group=_PROTOCOL)
    min_lr: float = opt(1e-4, "ReduceLROnPlateau min_lr", group=_PROTOCOL)
    max_steps: int | None = opt(None, "stop after this many optimizer steps", group=_PROTOCOL)
    restore_best: bool = opt(True, "test the best-validation epoch's weights, as Keras' "
                                   "ModelCheckpoint(save_best_only=True); --no-restore-best: the last's",
                             group=_PROTOCOL)
    device: str = opt("auto", "auto (CUDA when present), cpu or cuda", group=_EXEC,
                      choices=lambda: list(DEVICES))
    amp: bool = opt(True, "bf16 autocast on CUDA", group=_EXEC)
    threads: int | None = opt(None, f"torch CPU threads, 1..{MAX_THREADS} (default: torch's; 1 for "
                                    "mlp/cnn_small on CPU)", group=_EXEC)
    eval_batch_size: int = opt(512, "evaluation batch size", group=_EXEC)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str = "TrainConfig") -> "TrainConfig":
        """Build from a mapping; unknown keys (with close matches) and wrong types are refused."""
        return from_mapping(cls, d, what=what)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (checked like every field)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def check(self) -> "TrainConfig":
        """``self`` if every field has its type and range, else one
        :class:`~ngl.errors.InputTypeError` / :class:`~ngl.errors.InputError` line naming the field."""
        hints = _type_hints(type(self))
        for f in fields(self):
            check_value("TrainConfig", f.name, hints[f.name], getattr(self, f.name))
        for name, ok, want in self._range_checks():
            if not ok:
                raise InputError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")
        if self.augment is not None:
            parse_augment(self.augment)
        return self

    def _range_checks(self) -> list[tuple[str, bool, str]]:
        opt_min = lambda v, lo: v is None or v >= lo   # noqa: E731
        return [
            ("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"), ("seed", self.seed >= 0, ">= 0"),
            ("label_noise", 0 <= self.label_noise < 1, "in [0, 1)"),
            ("train_fraction", 0 < self.train_fraction <= 1, "in (0, 1]"),
            ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
            ("max_steps", opt_min(self.max_steps, 1), ">= 1 or None"),
            ("image_size", opt_min(self.image_size, 1) and (self.image_size or 0) <= MAX_IMAGE_SIZE,
             f"in 1..{MAX_IMAGE_SIZE} or None"),
            ("threads", opt_min(self.threads, 1) and (self.threads or 0) <= MAX_THREADS,
             f"in 1..{MAX_THREADS} or None"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, ">= 0"),
            ("min_lr", self.min_lr >= 0, ">= 0"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("dataset", bool(self.dataset), "a dataset name, folder:PATH or npz:PATH"),
            ("model", bool(self.model), "a model name or 'auto'"),
            ("device", self.device in DEVICES, "'auto', 'cpu' or 'cuda'")]

    def pinned(self) -> "TrainConfig":
        """This config with its loss pinned to its content (:func:`pin_loss`)."""
        spec, _ = pin_loss(self.loss)
        return self if spec == self.loss else dataclasses.replace(self, loss=spec)

    def key(self) -> str:
        """The run's identity (:func:`run_key`)."""
        return run_key(self.to_dict())


@dataclass
class RunResult:
    status: str                      # "ok" | "diverged" | "failed"
    test_accuracy: float | None      # None with the note "no_test_split", or when not "ok"
    val_accuracy: float | None       # final epoch's
    best_val_accuracy: float | None
    epochs_run: int
    steps: int
    history: list[dict]              # per epoch: epoch, loss, accuracy, val_accuracy, lr, time
    wall_time: float
    error: str | None
    config: dict
    notes: list[str] = field(default_factory=list)   # "no_test_split", "no_validation_split"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


# --------------------------------------------------------------------------- identity
def is_expression_spec(spec: Any, *, registered: typing.Container[str] = ()) -> bool:
    """Whether a loss spec names an expression: ``expr:<infix>``, a ``*.json`` path, or an existing
    file; a name in ``registered`` (a loss registry) is never a file. The one rule that the PyTorch
    and Keras registries, bench and the search share.

    >>> is_expression_spec("expr:square(p - y)"), is_expression_spec("ngl")
    (True, False)
    """
    if not isinstance(spec, str) or spec in registered:
        return False
    return spec.startswith("expr:") or spec.endswith(".json") or os.path.isfile(spec)


def pin_loss(spec: Any) -> tuple[Any, str | None]:
    """An expression loss as its content: ``(spec, source)``.

    A ``*.json`` expression file becomes ``"expr:<canonical infix>"`` of the tree it holds now, and
    ``source`` is its path; an ``expr:`` spec is brought to the same canonical infix (source
    ``None``); anything else (a registered name) is returned unchanged. A run's key, its stored row
    and what it trains are then the file's content, so editing the file makes new runs instead of
    reusing the old rows.

    >>> pin_loss("expr:y*(p - 1)")
    ('expr:y * (p - 1)', None)
    >>> pin_loss("ngl")
    ('ngl', None)
    """
    if not isinstance(spec, str):
        return spec, None
    is_expr = spec.startswith("expr:")
    if is_expr:
        return _pin_infix(spec), None
    if not is_expression_spec(spec, registered=_registered_if_file(spec)):
        return spec, None
    return _pin(spec, is_expr=False), str(spec)


@functools.lru_cache(maxsize=4096)
def _pin_infix(spec: str) -> str:
    """An ``expr:`` spec's canonical form: a function of the text alone, so computed once per text
    (a grid keys every run; a file's content may change and is read each time)."""
    return _pin(spec, is_expr=True)


def _pin(spec: str, *, is_expr: bool) -> str:
    from . import expr as E

    try:
        tree = E.parse(spec[5:]) if is_expr else E.load(spec)
    except (OSError, ValueError) as exc:      # ExprError is a ValueError; a missing file an OSError
        raise InputError(f"loss {spec!r}: {' '.join(str(exc).split())}") from None
    return "expr:" + E.to_infix(tree)


def _registered_if_file(spec: str) -> typing.Container[str]:
    """The loss registry's names, looked up only when a file shadows a name (rare)."""
    if spec.endswith(".json") or not os.path.isfile(spec):
        return ()
    from .losses import list_losses
    return list_losses()


def pin_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its loss pinned to its content (:func:`pin_loss`)."""
    spec, _ = pin_loss(config.get("loss"))
    return dict(config) if spec == config.get("loss") else {**config, "loss": spec}


def canonical(value: Any) -> Any:
    """``1.0`` and ``1`` are the same setting; containers are canonicalised inside."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def run_key(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key of a resolved config: SHA-256 of its canonical JSON, leaving out
    :data:`IGNORED_IN_KEY`. Equal configs give equal keys across processes and sessions. An
    expression-file loss counts by its content (:func:`pin_loss`), not by its path."""
    kept = {k: v for k, v in pin_config(config).items() if k not in IGNORED_IN_KEY}
    text = json.dumps(canonical(kept), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_label(config: Mapping[str, Any]) -> str:
    """The report column of a run: ``digits``, ``digits+noise20``, ``digits+frac50``.

    >>> dataset_label({"dataset": "digits", "label_noise": 0.2})
    'digits+noise20'
    """
    label = str(config.get("dataset", "?"))
    noise = float(config.get("label_noise") or 0.0)
    frac = float(config.get("train_fraction", 1.0) or 1.0)
    if noise:
        label += f"+noise{round(noise * 100):d}"
    if frac < 1.0:
        label += f"+frac{round(frac * 100):d}"
    return label

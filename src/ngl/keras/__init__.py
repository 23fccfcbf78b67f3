"""Keras 3 versions of every ngl loss: one ``keras.losses.Loss`` per registered loss, written
with ``keras.ops`` so it runs on the tensorflow, jax and torch backends with the numbers of
:mod:`ngl.losses`.

Keras convention: ``from_logits=False`` by default (``y_pred`` are probabilities, from a model
ending in a softmax); class axis last; integer labels ``(B,)`` or one-hot ``(B, C)``.

Example::

    import ngl.keras
    model.compile(optimizer="adam", loss=ngl.keras.NGL())
    loss = ngl.keras.get_loss("focal", gamma=1.5)
    loss = ngl.keras.from_expression("exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    keras.losses.get({"class_name": "ngl>NGL", "config": {}})   # registered under package "ngl"

Importing this module imports ``keras`` (and thereby the backend chosen by ``KERAS_BACKEND``),
never torch unless torch is that backend; ``import ngl`` alone never imports keras.
"""
from ..expr import NGL_ALPHA as ALPHA   # former ngl.keras.ALPHA: now the one copy in ngl.expr
from ._common import KerasLoss, NGLKerasLoss, dense_targets, log_probs, targets
from .registry import LOSSES, list_losses
from .losses import (CE, CEL2, NGL, SCE, Expression, Focal, LabelSmoothingCE, Poly1, apply_l2,  # registers
                     from_expression, get_loss)

__all__ = ["NGL", "CE", "CEL2", "Focal", "SCE", "Poly1", "LabelSmoothingCE", "Expression",
           "KerasLoss", "NGLKerasLoss", "apply_l2", "get_loss", "list_losses", "from_expression",
           "LOSSES", "targets", "dense_targets", "log_probs", "ALPHA"]

"""PyTorch losses: NGL and its baselines, each a pure function plus a thin ``nn.Module``.

>>> from ngl.losses import get_loss, list_losses, ngl_loss
>>> criterion = get_loss("ngl")            # NGLLoss(), the published defaults
>>> loss = criterion(logits, labels)       # logits (B, C[, ...]), labels (B[, ...]) or one-hot
"""
from .. import expr as _E
from ._common import REDUCTIONS, reduce_loss
from .crossentropy import (CEL2Loss, CELoss, LabelSmoothingCELoss, Poly1Loss, ce_l2_loss, ce_loss,
                           l2_penalty, label_smoothing_ce_loss, poly1_loss)
from .expression import ExpressionLoss, expression_loss, from_expression
from .focal import FocalLoss, focal_loss
from .ngl import NGLLoss, ngl_loss
from .registry import LossInfo, get_loss, get_loss_info, list_losses, loss_label, register_loss
from .sce import SCELoss, sce_loss

__all__ = [
    "ngl_loss", "NGLLoss", "ce_loss", "CELoss", "ce_l2_loss", "CEL2Loss", "focal_loss", "FocalLoss",
    "sce_loss", "SCELoss", "poly1_loss", "Poly1Loss", "label_smoothing_ce_loss",
    "LabelSmoothingCELoss", "expression_loss", "ExpressionLoss", "from_expression", "l2_penalty",
    "reduce_loss", "REDUCTIONS", "LossInfo", "register_loss", "list_losses", "get_loss",
    "get_loss_info", "loss_label",
]

_PAPER = "Akhmedova & Körber, arXiv 2404.12948 (2024)"
for _info in [
    LossInfo("ce", ce_loss, CELoss, "CE", "cross entropy, -sum_c y_c log p_c", "F.cross_entropy",
             expression=_E.CE, published=True),
    LossInfo("ce_l2", ce_l2_loss, CEL2Loss, "CE + L2",
             "cross entropy plus l2 * sum of squared kernel weights (through penalty(model))",
             _PAPER, expression=_E.CE, published=True),
    LossInfo("focal", focal_loss, FocalLoss, "Focal", "-alpha (1 - p_t)^gamma log p_t",
             "Lin et al., ICCV 2017", expression=_E.parse("-(0.25 * y * square(1 - p) * log(p))"),
             published=True),
    LossInfo("sce", sce_loss, SCELoss, "SCE", "alpha CE + beta reverse CE",
             "Wang et al., ICCV 2019", expression=_E.parse("-(0.1 * y * log(p)) + 9.2103404 * p * (1 - y)"),
             published=True),
    LossInfo("ngl", ngl_loss, NGLLoss, "f5 (NGL)",
             "mean_c exp(2.4092 - p_c (1 + y_c)) - cos(cos(sin p_c))", _PAPER,
             expression=_E.NGL, published=True),
    LossInfo("poly1", poly1_loss, Poly1Loss, "Poly-1", "CE + epsilon (1 - p_t)",
             "Leng et al., ICLR 2022", expression=_E.parse("-(y * log(p)) + y * (1 - p)")),
    LossInfo("label_smoothing_ce", label_smoothing_ce_loss, LabelSmoothingCELoss, "CE + LS",
             "CE against (1 - s) y + s / C", "Szegedy et al., CVPR 2016"),
]:
    register_loss(_info)
del _info

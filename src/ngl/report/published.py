"""The published table (seed README of Akhmedova & Körber, arXiv 2404.12948): CE's accuracy in %
and every other loss in pp vs CE, ResNet50 + InceptionV3 from scratch, 5 runs each. Embedded as data.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED_DATASETS", "PUBLISHED", "PUBLISHED_MEAN", "PUBLISHED_LOSS_NAMES",
           "published_markdown", "compare_markdown"]

#: column order of the published table, as ``ngl.data`` dataset names
PUBLISHED_DATASETS = ("malaria", "pcam", "colorectal_histology", "cifar10", "fashion_mnist",
                      "cifar100", "caltech101")

#: row label -> values per dataset (CE: accuracy %, others: pp vs CE)
PUBLISHED: dict[str, tuple[float, ...]] = {
    "CE": (94.0, 69.4, 88.9, 92.8, 94.0, 68.2, 72.5),
    "SCE": (-0.06, +0.62, -0.45, -3.66, -2.42, -0.80, +2.71),
    "Focal": (+0.34, +1.03, +2.89, -0.64, -0.02, -2.14, -0.78),
    "CE + L2": (+0.11, -0.64, +0.88, +0.32, +0.09, +0.38, +3.67),
    "f1": (-0.27, +0.81, +3.27, -0.34, +0.31, -0.84, -3.67),
    "f2": (-0.09, +2.89, -7.56, -0.81, +0.04, +0.60, -3.61),
    "f3": (-27.98, +3.24, -62.45, -1.79, -0.48, -59.36, -41.67),
    "f4": (-0.21, -0.13, -1.98, -0.14, 0.00, -0.32, -6.49),
    "f5 (NGL)": (-0.27, +7.07, +1.77, +0.12, +0.07, +1.01, +5.00),
}
#: the published Mean column (CE: "+-0")
PUBLISHED_MEAN = {"CE": 0.0, "SCE": -0.58, "Focal": +0.10, "CE + L2": +0.69, "f1": -0.10,
                  "f2": -1.22, "f3": -27.21, "f4": -1.32, "f5 (NGL)": +2.11}
#: published row label -> registered loss name (f1..f4 were never published as formulas)
PUBLISHED_LOSS_NAMES = {"CE": "ce", "SCE": "sce", "Focal": "focal", "CE + L2": "ce_l2",
                        "f5 (NGL)": "ngl"}


def _f(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "n/a"
    v = round(v, 2) + 0.0
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def published_markdown() -> str:
    """The seed README's table as Markdown."""
    head = "| Loss | " + " | ".join(PUBLISHED_DATASETS) + " | Mean |"
    rows = [head, "| :--- | " + " | ".join("---:" for _ in PUBLISHED_DATASETS) + " | ---: |"]
    for label, vals in PUBLISHED.items():
        signed = label != "CE"
        mean = "+-0" if label == "CE" else _f(PUBLISHED_MEAN[label])
        rows.append(f"| {label} | " + " | ".join(_f(v, signed) for v in vals) + f" | {mean} |")
    return "\n".join(rows) + "\n"


def compare_markdown(summary: dict[str, Any]) -> str:
    """Published vs ours (``published / ours``) for the datasets both tables have; when none
    match, the published table alone with a note saying so."""
    common = [d for d in PUBLISHED_DATASETS if d in summary["datasets"]]
    out = ["## Published (Akhmedova & Körber 2024, ResNet50 + InceptionV3) vs this benchmark", ""]
    if not common:
        out += [f"No dataset in common (ours: {', '.join(summary['datasets']) or 'none'}); the published "
                "table for reference:", "", published_markdown()]
        return "\n".join(out)
    out += ["Cells: published / ours (CE: accuracy %; others: pp vs CE).", "",
            "| Loss | " + " | ".join(common) + " |", "| :--- | " + " | ".join("---:" for _ in common) + " |"]
    for label, name in PUBLISHED_LOSS_NAMES.items():
        if name not in summary["cells"]:
            continue
        key, signed = ("mean", False) if name == summary["baseline"] else ("delta", True)
        cells = []
        for d in common:
            pub = PUBLISHED[label][PUBLISHED_DATASETS.index(d)]
            cells.append(f"{_f(pub, signed)} / {_f(summary['cells'][name][d][key], signed)}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"

"""The statistics of every comparison in ngl (``ngl report`` and ``ngl search validate``):
a paired t-test per cell and Holm's step-down correction across cells.

>>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
[0.03, 0.06, 0.06]
"""
from __future__ import annotations

import math
from statistics import mean, stdev
from typing import Any, Sequence

__all__ = ["paired_test", "holm", "SIGNIFICANCE"]

#: corrected p below this marks a delta as significant in reports
SIGNIFICANCE = 0.05


def paired_test(diffs: Sequence[float], *, level: float = 0.95) -> dict[str, Any]:
    """Two-sided paired t-test of per-pair differences (pp) against 0, with a ``level`` CI.

    .. math:: t = \\bar d / (s_d / \\sqrt n), \\quad df = n - 1

    Returns ``{"n", "mean", "t", "p_value", "ci_low", "ci_high"}``; ``p_value``/CI are ``None`` for
    fewer than 2 pairs; with zero spread p is 1 (mean 0) or 0 (mean != 0).

    >>> r = paired_test([1.0, 2.0, 3.0])
    >>> r["mean"], round(r["t"], 3), round(r["p_value"], 4)
    (2.0, 3.464, 0.0742)
    """
    diffs = list(diffs)
    n = len(diffs)
    out: dict[str, Any] = {"n": n, "mean": mean(diffs) if n else None, "t": None, "p_value": None,
                           "ci_low": None, "ci_high": None}
    if n < 2:
        return out
    from scipy import stats

    m, s = mean(diffs), stdev(diffs)
    se = s / math.sqrt(n)
    if se == 0.0:
        out.update(p_value=1.0 if m == 0 else 0.0, ci_low=m, ci_high=m,
                   t=0.0 if m == 0 else math.copysign(math.inf, m))
        return out
    t = m / se
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    out.update(t=t, p_value=float(2 * stats.t.sf(abs(t), n - 1)), ci_low=m - half, ci_high=m + half)
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order (``None`` stays ``None`` and does not
    count towards m).

    .. math:: \\tilde p_{(i)} = \\min\\Big(1, \\max_{j \\le i} (m - j + 1)\\, p_{(j)}\\Big)

    Sort ascending, multiply the i-th (1-based) of m by m - i + 1, keep the sequence monotone,
    cap at 1 (Holm 1979).
    """
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out

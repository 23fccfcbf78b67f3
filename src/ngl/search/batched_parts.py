"""The parts of a population trained as one batched model (:mod:`ngl.search.batched`): the stacked
model, Adam with one learning rate per member, one ReduceLROnPlateau per member, and the members'
losses evaluated in groups.

Every part keeps the population on a leading member axis ``M`` and computes what the harness
(:mod:`ngl.train`) computes for one run, member by member:

- :class:`StackedModel`: parameters stacked by ``torch.func.stack_module_state``, run through
  batched products that equal the unbatched layers' bit for bit;
- :class:`StackedAdam`: ``torch.optim.Adam``'s update (defaults: betas 0.9/0.999, eps 1e-8, no
  weight decay), element-wise, with the step size per member (so each member can have its own
  learning rate); equal to one ``torch.optim.Adam`` per member bit for bit (a test);
- :class:`MemberSchedules`: one ``ReduceLROnPlateau`` per member, stepped on that member's
  validation accuracy;
- :class:`LossGroups`: an expression loss is evaluated once over its members' stacked slice, a
  registered loss member by member, as the harness calls it.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import stack_module_state

from .. import expr as E

__all__ = ["BatchedUnsupported", "StackedModel", "StackedAdam", "MemberSchedules", "LossGroups",
           "loss_order", "build_loss"]


class BatchedUnsupported(NotImplementedError):
    """This task cannot be trained batched exactly as the harness trains it; the message says
    why in one line. The caller trains those members one at a time instead."""


# --------------------------------------------------------------------------- model
def _linear_stack(model: nn.Module) -> list[tuple[str, str]] | None:
    """``[(kind, name)]`` of an ``nn.Sequential`` of a leading Flatten, biased Linear and ReLU
    layers (``mlp``), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    out = []
    for i, (name, m) in enumerate(model.named_children()):
        if isinstance(m, nn.Flatten) and i == 0 and m.start_dim == 1 and m.end_dim == -1:
            continue
        if isinstance(m, nn.Linear) and m.bias is not None:
            out.append(("linear", name))
        elif isinstance(m, nn.ReLU):
            out.append(("relu", name))
        else:
            return None
    return out


class _BatchedLinear(torch.autograd.Function):
    """``M`` linear layers at once, ``(M, B, in) -> (M, B, out)``. The forward and the three
    gradients are the batched forms of the products ``nn.Linear`` computes (``addmm``, then
    ``g @ W``, ``g^T @ x`` and ``g.sum(0)``), so each member's values equal the unbatched layer's
    bit for bit on the CPU. (Under ``vmap`` the weight gradient comes out as ``(x^T g)^T``, which
    rounds differently and moved 2 of 16 harness runs by 1 and 8 validation samples.) Under
    autocast it computes in the autocast dtype, as ``addmm`` does there."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        if torch.is_autocast_enabled(x.device.type):
            dt = torch.get_autocast_dtype(x.device.type)
            x, weight, bias = x.to(dt), weight.to(dt), bias.to(dt)
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        dx, dw, db = ctx.dtypes
        grad = grad.to(x.dtype)
        grad_x = torch.bmm(grad, weight).to(dx) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x).to(dw), grad.sum(1).to(db)


class StackedModel:
    """``M`` copies of one architecture (``torch.func.stack_module_state``: parameters stacked on
    a leading member axis, leaf tensors that collect gradients), run as one batched model.

    Only stacks of Linear and ReLU layers (``mlp``) are batched: their batched products are bit
    for bit the harness's. Other models raise :class:`BatchedUnsupported`. (``cnn_small`` under
    ``vmap``, its BatchNorm running statistics stacked as buffers, does train, but its grouped
    convolutions round otherwise than the harness's: after 60 steps 3 of 3 runs ended 1-2
    validation samples away, and it ran 2.6x slower on one CPU thread than one run at a time.)
    """

    def __init__(self, models: list[nn.Module], *, name: str = "model",
                 device: torch.device | str | None = None) -> None:
        layers = _linear_stack(models[0])
        if layers is None:
            raise BatchedUnsupported(
                f"model {name!r} is not a stack of Linear and ReLU layers (mlp): batched, it would not "
                f"train exactly as the harness does (convolutions under vmap round otherwise); train "
                f"it one run at a time")
        if layers[-1][0] != "linear":
            raise BatchedUnsupported(f"model {name!r} does not end in a Linear layer; train it one run at a time")
        self.layers = layers
        params, _ = stack_module_state(models)
        device = device if device is not None else next(iter(params.values())).device
        self.params: dict[str, Tensor] = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}

    def __call__(self, x: Tensor) -> Tensor:
        """Logits ``(M, B, C)`` of inputs ``(M, B, ...)``, one slice per member."""
        x = x.flatten(2)
        for kind, name in self.layers:
            if kind == "linear":
                x = _BatchedLinear.apply(x, self.params[f"{name}.weight"], self.params[f"{name}.bias"])
            else:
                x = torch.relu_(x)               # as nn.ReLU(inplace=True); the layers keep their inputs
        return x

    def logit_grad_sums(self) -> Tensor:
        """``(M, C)``: each member's gradient of the logits summed over its batch (the output
        layer's bias gradient, after a backward pass); non-finite where any of it was."""
        return self.params[f"{self.layers[-1][1]}.bias"].grad

    def keep(self, rows: Tensor) -> None:
        """Keep only members ``rows`` (a long tensor of positions), in that order."""
        self.params = {k: v.detach().index_select(0, rows).requires_grad_() for k, v in self.params.items()}

    def member_parameters(self, i: int) -> "_MemberView":
        return _MemberView(self.params, i)


class _MemberView:
    """Member ``i``'s slice of the stacked parameters, with ``parameters()`` as an ``nn.Module``
    has: what a registered loss's ``penalty(model)`` hook reads (CE + L2)."""

    def __init__(self, params: dict[str, Tensor], i: int) -> None:
        self._params, self._i = params, i

    def parameters(self) -> Iterator[Tensor]:
        return (p[self._i] for p in self._params.values())


# --------------------------------------------------------------------------- optimiser
class StackedAdam:
    """Adam over stacked parameters with one learning rate per member.

    The arithmetic is ``torch.optim.Adam``'s (single-tensor implementation, the CPU default; the
    CUDA foreach one computes the same): ``m.lerp_(g, 1 - b1)``, ``v.mul_(b2).addcmul_(g, g,
    value=1 - b2)``, ``denom = (v.sqrt() / sqrt(1 - b2**t)).add_(eps)``, and ``p += (-lr / (1 -
    b1**t)) * m / denom``, the step size computed in double precision as there and rounded to the
    parameters' dtype. All members step together (``t`` is shared); ``lr`` (float64, CPU) holds
    the members' learning rates and may be replaced between steps (the schedules do).
    """

    def __init__(self, params: list[Tensor], lr: list[float], *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.betas, self.eps, self.t = betas, eps, 0
        self.lr = torch.tensor(lr, dtype=torch.float64)                  # CPU, double: as Python floats
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self._scratch: list[tuple[Tensor, Tensor]] | None = None      # denominators and updates

    @torch.no_grad()
    def step(self, params: list[Tensor], grads: list[Tensor]) -> None:
        b1, b2 = self.betas
        self.t += 1
        bias1, bias2_sqrt = 1 - b1 ** self.t, (1 - b2 ** self.t) ** 0.5
        neg_step = (-(self.lr / bias1)).to(params[0].dtype).to(params[0].device, non_blocking=True)
        if self._scratch is None:
            self._scratch = [(torch.empty_like(p), torch.empty_like(p)) for p in params]
        for p, g, m, v, (denom, update) in zip(params, grads, self.exp_avg, self.exp_avg_sq, self._scratch):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            torch.sqrt(v, out=denom).div_(bias2_sqrt).add_(self.eps)   # in place: the same kernels
            torch.mul(m, neg_step.view((-1,) + (1,) * (p.ndim - 1)), out=update)
            p.add_(update.div_(denom))

    def keep(self, rows: Tensor) -> None:
        """Keep only members ``rows``, as :meth:`StackedModel.keep`."""
        self.lr = self.lr.index_select(0, rows.cpu())
        self.exp_avg = [m.index_select(0, rows) for m in self.exp_avg]
        self.exp_avg_sq = [v.index_select(0, rows) for v in self.exp_avg_sq]
        self._scratch = None


class MemberSchedules:
    """One ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (mode max) per member, each on a
    one-parameter stand-in optimizer whose learning rate is read back after every step."""

    def __init__(self, count: int, *, lr: float, factor: float, patience: int, min_lr: float) -> None:
        self._opts = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr) for _ in range(count)]
        self._scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(
            o, mode="max", factor=factor, patience=patience, min_lr=min_lr) for o in self._opts]

    def step(self, metrics: list[float]) -> list[float]:
        """Step each member's schedule on its metric; return the learning rates."""
        for sched, value in zip(self._scheds, metrics):
            sched.step(value)
        return self.lrs()

    def lrs(self) -> list[float]:
        return [float(o.param_groups[0]["lr"]) for o in self._opts]

    def keep(self, rows: list[int]) -> None:
        self._opts = [self._opts[i] for i in rows]
        self._scheds = [self._scheds[i] for i in rows]


# --------------------------------------------------------------------------- losses
def build_loss(spec: str, **kwargs: Any) -> nn.Module:
    """The harness's loss module of ``spec`` (a registered name, ``expr:<infix>`` or ``*.json``)."""
    from ..losses import get_loss

    return get_loss(spec, **kwargs)


def _expression_of(criterion: nn.Module) -> E.Expr | None:
    """The tree of an expression loss in its default form (logits, no weights, mean), else None."""
    from ..losses.expression import ExpressionLoss

    if not isinstance(criterion, ExpressionLoss) or criterion.weight is not None:
        return None
    hp = criterion.hparams
    default = hp.get("from_logits", True) and hp.get("ignore_index", -100) == -100
    return criterion.expression if default and criterion.reduction == "mean" else None


class _TorchOps:
    """The array functions that :data:`ngl.expr.PRIMITIVES` call, taken from torch as
    ``E.evaluate(..., namespace="torch")`` takes them, with each constant tensor made once (the
    same values: ``torch.tensor(v, dtype=, device=)`` of the argument they meet)."""

    def __init__(self) -> None:
        self._consts: dict[tuple, Tensor] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def const(self, value: float, like: Tensor) -> Tensor:
        key = (value, like.dtype, like.device)
        if key not in self._consts:
            self._consts[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
        return self._consts[key]


class _LossTree:
    """One expression loss, evaluated as ``E.evaluate(tree, p, y, namespace="torch")`` evaluates
    it, except that what does not depend on ``p`` is computed once: subtrees of constants (0-dim
    tensors, as there) and subtrees of ``y`` alone, which take one value where the one-hot ``y``
    is 1 and another where it is 0, so that each step they cost one ``where``. The values are the
    same bits: the operations are element-wise and their kernels give the same value at every
    position of a tensor (a test checks values and gradients on random trees)."""

    def __init__(self, tree: E.Expr, ops: _TorchOps, *, dtype: torch.dtype, device: torch.device) -> None:
        self.tree, self.ops = tree, ops
        self.pad = tree.symbols != {"p", "y"}       # E.evaluate broadcasts such a value to p's shape
        self.fixed: dict[int, Tensor] = {}          # id(node) -> its value (constants only)
        self.by_y: dict[int, tuple[Tensor, Tensor]] = {}   # id(node) -> (value at y = 0, at y = 1)
        like = torch.zeros((), dtype=dtype, device=device)
        self._plan(tree, like, torch.tensor([0.0, 1.0] * 16, dtype=dtype, device=device))

    def _fold(self, node: E.Expr, p: Tensor, y: Tensor) -> Tensor:
        from ..expr.tree import fold

        return fold(node, p=p, y=y, const=lambda v: self.ops.const(v, p),
                    apply=lambda prim, args: prim.fn(self.ops, *args))

    def _plan(self, node: E.Expr, like: Tensor, ys: Tensor) -> None:
        if not node.args:
            return
        symbols = node.symbols
        if "p" not in symbols:
            if "y" in symbols:
                out = self._fold(node, like, ys)
                self.by_y[id(node)] = (out[0].clone(), out[1].clone())
            else:
                self.fixed[id(node)] = self._fold(node, like, like)
            return
        for arg in node.args:
            self._plan(arg, like, ys)

    @property
    def uses_y_values(self) -> bool:
        return bool(self.by_y)

    def __call__(self, p: Tensor, y: Tensor, y_is_one: Tensor | None) -> Tensor:
        ops, fixed, by_y = self.ops, self.fixed, self.by_y

        def value(node: E.Expr) -> Tensor:
            if node.op == "p":
                return p
            if node.op == "y":
                return y
            if node.op == "const":
                return ops.const(node.value, p)
            key = id(node)
            if key in fixed:
                return fixed[key]
            if key in by_y:
                return torch.where(y_is_one, by_y[key][1], by_y[key][0])
            return E.PRIMITIVES[node.op].fn(ops, *[value(a) for a in node.args])

        out = value(self.tree)
        return out + 0 * p + 0 * y if self.pad else out


class LossGroups:
    """Per-member training losses of a population ordered by :func:`loss_order`: the members of
    expression losses first (one softmax over all of them, then each expression once over its
    members' stacked slice), then those of registered losses, each called as the harness calls it.

    ``specs[i]`` is member ``i``'s loss; ``criteria`` maps a spec to its module (built once by
    :func:`build_loss`).
    """

    def __init__(self, specs: list[str], criteria: dict[str, nn.Module]) -> None:
        self.trees: list[tuple[int, E.Expr]] = []             # (members, tree)
        self.modules: list[nn.Module] = []                    # one per member of a registered loss
        last = None
        for spec in specs:
            tree = _expression_of(criteria[spec])
            if tree is None:
                self.modules.append(criteria[spec])
            elif self.modules:
                raise ValueError("members of expression losses must come first (loss_order)")
            elif last is criteria[spec]:
                self.trees[-1] = (self.trees[-1][0] + 1, tree)
            else:
                self.trees.append((1, tree))
            last = criteria[spec]
        self.n_expression = sum(size for size, _ in self.trees)
        self._ops = _TorchOps()
        self._compiled: dict[tuple, list[_LossTree]] = {}     # per (dtype, device)

    def _loss_trees(self, like: Tensor) -> list[_LossTree]:
        key = (like.dtype, like.device)
        if key not in self._compiled:
            self._compiled[key] = [_LossTree(tree, self._ops, dtype=like.dtype, device=like.device)
                                   for _, tree in self.trees]
        return self._compiled[key]

    def __call__(self, logits: Tensor, labels: Tensor, model: StackedModel) -> tuple[list[Tensor], Tensor]:
        """``(roots, losses)`` for logits ``(M, B, C)`` (float32) and labels ``(M, B)``: ``losses``
        ``(M,)`` (detached); back-propagating ``roots`` (scalars) gives each member exactly the
        gradient of its own loss."""
        roots, values = [], []
        ne = self.n_expression
        if ne:
            p = torch.softmax(logits[:ne], dim=-1)
            trees = self._loss_trees(p)
            hot = F.one_hot(labels[:ne], logits.shape[-1])
            onehot = hot.to(logits.dtype)
            sizes = [size for size, _ in self.trees]
            is_one = hot.bool().split(sizes) if any(t.uses_y_values for t in trees) else [None] * len(sizes)
            for tree, pk, yk, ok in zip(trees, p.split(sizes), onehot.split(sizes), is_one):
                per_member = tree(pk, yk, ok).mean(-1).mean(-1)    # expression_loss: class mean, batch mean
                roots.append(per_member.sum())
                values.append(per_member.detach())
        for i, module in enumerate(self.modules, start=ne):
            loss = module(logits[i], labels[i])
            penalty = getattr(module, "penalty", None)
            if penalty is not None:
                loss = loss + penalty(model.member_parameters(i))
            roots.append(loss)
            values.append(loss.detach().reshape(1))
        return roots, torch.cat(values)


def loss_order(spec: str, criteria: dict[str, nn.Module]) -> tuple[bool, str]:
    """Sort key of a member's loss for :class:`LossGroups`: expression losses first, equal specs
    together."""
    return _expression_of(criteria[spec]) is None, spec

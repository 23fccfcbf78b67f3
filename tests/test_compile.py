"""Every registered loss under ``torch.compile(fullgraph=True)`` on CPU, forward and backward equal
to eager (as kornia tests its losses under dynamo). ``aot_eager`` proves one graph for forward and
backward without code generation; Inductor runs for NGL, whose native kernel is the custom op
``ngl::value_and_grad``."""
from __future__ import annotations

import pytest
import torch

from ngl.losses import get_loss, list_losses

SPECS = list_losses() + ["expr:exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"]
SHAPE = (3, 4, 3, 2)


def inputs(soft: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g) * 2
    if soft:
        return x, torch.softmax(torch.randn(SHAPE, generator=g) * 3, 1)
    t = torch.randint(0, SHAPE[1], SHAPE[:1] + SHAPE[2:], generator=g)
    t[0, 0, 0] = -100                                       # an ignored label
    return x, t


def run(fn, x, t):
    z = x.clone().requires_grad_(True)
    loss = fn(z, t)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), grad


def compare(spec, soft, backend, **kwargs):
    torch._dynamo.reset()
    criterion = get_loss(spec, **kwargs)
    compiled = torch.compile(criterion, fullgraph=True, backend=backend)
    for seed in (0, 1):     # a second call reuses the graph (no recompile needed for equal shapes)
        x, t = inputs(soft, seed)
        got, ref = run(compiled, x, t), run(criterion, x, t)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_fullgraph_aot_eager_equals_eager(spec, soft):
    compare(spec, soft, "aot_eager")


@pytest.mark.parametrize("spec", ["ngl", "focal"])
def test_fullgraph_reduction_none_and_weight(spec):
    compare(spec, False, "aot_eager", reduction="none", weight=torch.tensor([0.5, 1.0, 2.0, 3.0]))


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_ngl_graph_holds_the_custom_op(soft):
    """dynamo sees the native kernel as one op (no graph break, no ctypes call in the graph)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    x, t = inputs(soft)
    torch.compile(get_loss("ngl"), fullgraph=True, backend=backend)(x, t)
    targets = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
    assert "ngl.value_and_grad" in targets, targets


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_fake_kernel_matches_real_one(soft):
    from torch.library import opcheck

    x, t = inputs(soft)
    opcheck(torch.ops.ngl.value_and_grad.default, (x.requires_grad_(True), t if soft else t.clamp_min(0), 2.4092),
            test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                        "test_aot_dispatch_dynamic"))


@pytest.mark.slow
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_fullgraph_inductor_ngl(soft):
    """Forward and backward of NGL under Inductor equal eager, labels and soft targets."""
    compare("ngl", soft, "inductor")


@pytest.mark.parametrize("spec", ["ngl", "sce"])
def test_dynamic_batch_size(spec):
    """A last, smaller batch reuses one dynamic-shape graph (the fake kernel takes symbolic sizes)."""
    torch._dynamo.reset()
    criterion = get_loss(spec)
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch in (6, 5):
        g = torch.Generator().manual_seed(batch)
        x, t = torch.randn(batch, 7, generator=g), torch.randint(0, 7, (batch,), generator=g)
        got, ref = run(compiled, x, t), run(criterion, x, t)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list_losses())
def test_pure_function_compiles(name):
    """The pure functions (checked keywords included) compile as well as the modules."""
    from ngl.losses import get_loss_info

    torch._dynamo.reset()
    fn = get_loss_info(name).fn
    compiled = torch.compile(lambda z, t: fn(z, t, reduction="sum"), fullgraph=True, backend="aot_eager")
    x, t = inputs(False)
    got, ref = run(compiled, x, t), run(lambda z, t: fn(z, t, reduction="sum"), x, t)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)

"""One matrix over every registered loss (``list_losses()``): dtypes, reductions and shapes,
float64 gradcheck, finite at extreme logits, module == function, bad inputs, weight/ignore_index."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ngl.losses import get_loss, get_loss_info, list_losses

LOSSES = list_losses()
SHAPES = {"BC": (6, 5), "BCHW": (3, 4, 3, 2)}
# losses implemented as F.cross_entropy (+ a term that needs a model): compared to it directly
TORCH_CE_KWARGS = {"ce": {}, "ce_l2": {}, "label_smoothing_ce": {"label_smoothing": 0.1}}


def make_inputs(shape, *, soft=False, dtype=torch.float32, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 3, 1).to(dtype)
    else:
        target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return logits, target


def per_sample_shape(shape):
    return shape[:1] + shape[2:]


def test_registry_is_complete():
    assert {"ngl", "ce", "ce_l2", "focal", "sce", "poly1", "label_smoothing_ce"} <= set(LOSSES)
    assert set(list_losses(published=True)) == {"ngl", "ce", "ce_l2", "focal", "sce"}
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        get_loss_info("nope")
    with pytest.raises(KeyError, match="registered: ce, ce_l2"):
        get_loss("nope")


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reductions_and_shapes(name, shape, soft, dtype):
    fn = get_loss_info(name).fn
    x, t = make_inputs(shape, soft=soft, dtype=dtype)
    none = fn(x, t, reduction="none")
    mean, total = fn(x, t, reduction="mean"), fn(x, t, reduction="sum")
    assert none.shape == per_sample_shape(shape)
    assert mean.shape == () and total.shape == ()
    assert none.dtype == mean.dtype == dtype
    assert torch.isfinite(none).all()
    torch.testing.assert_close(total, none.sum())
    torch.testing.assert_close(mean, none.mean())
    assert not torch.allclose(none, none.flatten()[:1].expand_as(none))   # depends on the sample


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name, soft, dtype):
    fn = get_loss_info(name).fn
    x, t = make_inputs(SHAPES["BCHW"], soft=soft, dtype=dtype)
    x.requires_grad_(True)
    x32 = x.detach().float().requires_grad_(True)
    t32 = t.float() if soft else t
    for reduction in ("none", "mean"):
        low, ref = fn(x, t, reduction=reduction), fn(x32, t32, reduction=reduction)
        # the same (rounded) inputs computed in float32: float32 accuracy, not 1e-3
        torch.testing.assert_close(low.float(), ref, rtol=1e-5, atol=1e-6)
    low.backward()
    ref.backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.float(), x32.grad, rtol=2e-2, atol=1e-4)  # grad is rounded to dtype


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_gradcheck_float64(name, shape, soft):
    fn = get_loss_info(name).fn
    x, t = make_inputs(shape, soft=soft, dtype=torch.float64, seed=1)
    x.requires_grad_(True)
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(lambda z: fn(z, t, reduction=reduction), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("scale", [100.0, 1e4])
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_finite_at_extreme_logits(name, scale, soft):
    fn = get_loss_info(name).fn
    x, t = make_inputs((8, 5), soft=soft, seed=2)
    x = (torch.sign(x) * scale).float()
    x[0] = torch.tensor([scale, -scale, -scale, -scale, -scale])   # confident, maybe wrong
    x[1] = -scale                                                  # all equal
    x.requires_grad_(True)
    for reduction in ("mean", "sum", "none"):
        loss = fn(x, t, reduction=reduction)
        assert torch.isfinite(loss).all(), (reduction, loss)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_equals_function(name, soft, reduction):
    info = get_loss_info(name)
    x, t = make_inputs(SHAPES["BCHW"], soft=soft, seed=3)
    module = get_loss(name, reduction=reduction)
    assert isinstance(module, info.module)
    torch.testing.assert_close(module(x, t), info.fn(x, t, reduction=reduction), rtol=0, atol=0)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    torch.testing.assert_close(info.module(weight=w, reduction=reduction)(x, t),
                               info.fn(x, t, weight=w, reduction=reduction), rtol=0, atol=0)


# --- bad inputs ------------------------------------------------------------------------------
BAD_INPUTS = {
    "label_column_B1": (lambda: (torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long)), ValueError, "squeeze"),
    "labels_wrong_batch": (lambda: (torch.randn(4, 3), torch.zeros(5, dtype=torch.long)), ValueError, "shape"),
    "soft_wrong_shape": (lambda: (torch.randn(4, 3), torch.rand(4, 2)), ValueError, "shape"),
    "label_too_big": (lambda: (torch.randn(4, 3), torch.tensor([0, 1, 3, 0])), ValueError, "out of range"),
    "label_negative": (lambda: (torch.randn(4, 3), torch.tensor([0, -1, 2, 0])), ValueError, "out of range"),
    "float_labels": (lambda: (torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0])), ValueError, "integer"),
    "rank_1_input": (lambda: (torch.randn(4), torch.zeros(4, dtype=torch.long)), ValueError, r"\(B, C\)"),
    "spatial_mismatch": (lambda: (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long)), ValueError, "shape"),
    "int_input": (lambda: (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long)), TypeError, "floating"),
    "bool_target": (lambda: (torch.randn(4, 3), torch.zeros(4, dtype=torch.bool)), TypeError, "bool"),
    "numpy_input": (lambda: (torch.randn(4, 3).numpy(), torch.zeros(4, dtype=torch.long)), TypeError, "torch.Tensor"),
    "weight_wrong_size": (lambda: (torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.ones(4)), ValueError, "weight"),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_inputs_raise(name, case):
    make, exc, match = BAD_INPUTS[case]
    args = make()
    kwargs = {"weight": args[2]} if len(args) > 2 else {}
    with pytest.raises(exc, match=match):
        get_loss_info(name).fn(args[0], args[1], **kwargs)
    with pytest.raises(exc, match=match):
        get_loss(name, **kwargs)(args[0], args[1])


@pytest.mark.parametrize("name", LOSSES)
def test_unknown_reduction(name):
    x, t = make_inputs((4, 3))
    with pytest.raises(ValueError, match="reduction must be one of"):
        get_loss_info(name).fn(x, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        get_loss(name, reduction="avg")


def float_hparams(name):
    return [k for k, v in get_loss_info(name).hparams.items()
            if isinstance(v, float) and not isinstance(v, bool)]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_hyperparameters_rejected(name, bad):
    x, t = make_inputs((4, 3))
    for hp in float_hparams(name):
        with pytest.raises(ValueError, match=hp):
            get_loss(name, **{hp: bad})
        with pytest.raises(ValueError, match=hp):
            get_loss_info(name).fn(x, t, **{hp: bad})


INVALID_HPARAMS = [("focal", {"gamma": -1.0}), ("focal", {"alpha": -0.5}), ("sce", {"alpha": -1.0}),
                   ("sce", {"beta": -1.0}), ("ce_l2", {"l2": -1e-4}),
                   ("label_smoothing_ce", {"smoothing": 1.5}), ("label_smoothing_ce", {"smoothing": -0.1})]


@pytest.mark.parametrize("name, kwargs", INVALID_HPARAMS)
def test_out_of_range_hyperparameters_rejected(name, kwargs):
    (hp,) = kwargs
    with pytest.raises(ValueError, match=hp):
        get_loss(name, **kwargs)
    x, t = make_inputs((4, 3))
    with pytest.raises(ValueError, match=hp):
        get_loss_info(name).fn(x, t, **kwargs, **({"model": torch.nn.Linear(3, 3)} if name == "ce_l2" else {}))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", ["0.5", None, True], ids=["str", "None", "bool"])
def test_non_numeric_hyperparameters_rejected(name, bad):
    for hp in float_hparams(name):
        if hp == "alpha" and name == "focal" and bad is None:
            continue   # focal's alpha=None means "no alpha"
        with pytest.raises(ValueError, match=hp):
            get_loss(name, **{hp: bad})


def test_every_loss_has_float_hparams_checked():
    """The NaN/inf test above is only meaningful if the registry exposes the hyperparameters."""
    assert {"alpha"} <= set(float_hparams("ngl"))
    assert {"gamma", "alpha"} <= set(float_hparams("focal"))
    assert {"alpha", "beta"} <= set(float_hparams("sce"))
    assert {"epsilon"} <= set(float_hparams("poly1"))
    assert {"smoothing"} <= set(float_hparams("label_smoothing_ce"))
    assert {"l2"} <= set(float_hparams("ce_l2"))


# --- weight and ignore_index like F.cross_entropy -----------------------------------------------
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_weight_and_ignore_index(name, shape):
    fn = get_loss_info(name).fn
    x, t = make_inputs(shape, seed=4)
    t = t.clone()
    t.view(-1)[::3] = -100
    w = torch.linspace(0.5, 2.0, shape[1])
    if name in TORCH_CE_KWARGS:
        kw = TORCH_CE_KWARGS[name]
        for reduction in ("mean", "sum", "none"):
            torch.testing.assert_close(fn(x, t, weight=w, reduction=reduction),
                                       F.cross_entropy(x, t, weight=w, reduction=reduction, **kw))
        return
    valid = t != -100
    plain = fn(x, t.clamp_min(0), reduction="none")              # unweighted per-sample values
    ws = torch.where(valid, w[t.clamp_min(0)], torch.zeros(()))
    none = fn(x, t, weight=w, reduction="none")
    torch.testing.assert_close(none, plain * ws)
    assert (none[~valid] == 0).all()
    torch.testing.assert_close(fn(x, t, weight=w, reduction="mean"), (plain * ws).sum() / ws.sum())
    torch.testing.assert_close(fn(x, t, weight=w, reduction="sum"), (plain * ws).sum())
    # ignore_index alone: the mean over the kept samples
    torch.testing.assert_close(fn(x, t, reduction="mean"), plain[valid].mean())
    # a custom ignore_index works too, and the default one is then an ordinary (invalid) label
    t7 = torch.where(valid, t, torch.full_like(t, 7 + shape[1]))
    torch.testing.assert_close(fn(x, t7, ignore_index=7 + shape[1], reduction="mean"), plain[valid].mean())
    with pytest.raises(ValueError, match="out of range"):
        fn(x, t, ignore_index=7 + shape[1])


@pytest.mark.parametrize("name", LOSSES)
def test_soft_one_hot_equals_labels(name):
    """One-hot float targets and integer labels give the same loss."""
    fn = get_loss_info(name).fn
    x, t = make_inputs(SHAPES["BCHW"], seed=5)
    onehot = F.one_hot(t, x.shape[1]).movedim(-1, 1).float()
    torch.testing.assert_close(fn(x, onehot, reduction="none"), fn(x, t, reduction="none"))


@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch_like_cross_entropy(name):
    """An empty batch: ``none`` is empty, ``sum`` is 0, ``mean`` is NaN (as ``F.cross_entropy``)."""
    fn = get_loss_info(name).fn
    x, t = torch.randn(0, 4, requires_grad=True), torch.zeros(0, dtype=torch.long)
    assert fn(x, t, reduction="none").shape == (0,)
    assert fn(x, t, reduction="sum").item() == 0
    assert torch.isnan(fn(x, t, reduction="mean"))


@pytest.mark.parametrize("name", LOSSES)
def test_memory_layout_does_not_matter(name):
    """channels_last and transposed (non-contiguous) predictions give the same values and grads."""
    fn = get_loss_info(name).fn
    x, t = make_inputs(SHAPES["BCHW"], seed=6)
    layouts = [x.contiguous(), x.to(memory_format=torch.channels_last),
               x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)]
    results = []
    for z in layouts:
        z = z.detach().requires_grad_(True)
        loss = fn(z, t, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), z)
        results.append((loss.detach(), g))
    for loss, g in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g, results[0][1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in LOSSES if get_loss_info(n).expression is not None])
def test_registered_expression_is_the_loss(name):
    """The registry's per-class expression (what the report prints) computes the loss itself:
    expression losses average over classes, CE-family losses sum, hence the factor C for those."""
    from ngl.losses import from_expression

    info = get_loss_info(name)
    x, t = make_inputs((6, 5), dtype=torch.float64, seed=7, scale=1.0)
    got = from_expression(info.expression, reduction="none")(x, t)
    ref = info.fn(x, t, reduction="none")
    factor = 1 if name == "ngl" else x.shape[1]
    torch.testing.assert_close(got * factor, ref, rtol=1e-5, atol=1e-6)


# --- every label ignored: as F.cross_entropy (NaN mean, 0 sum, zero gradients) ------------------
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_all_ignored_batch_like_cross_entropy(name, weighted):
    fn = get_loss_info(name).fn
    x, _ = make_inputs(SHAPES["BCHW"], seed=8)
    t = torch.full(per_sample_shape(SHAPES["BCHW"]), -100)
    w = torch.linspace(0.5, 2.0, x.shape[1]) if weighted else None
    for reduction in ("mean", "sum", "none"):
        z, zc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        got, ref = fn(z, t, weight=w, reduction=reduction), F.cross_entropy(zc, t, weight=w, reduction=reduction)
        torch.testing.assert_close(got, ref, equal_nan=True)
        got.sum().backward()
        ref.sum().backward()
        assert torch.equal(z.grad, torch.zeros_like(x)) and torch.equal(zc.grad, z.grad), reduction


# --- hyperparameter keywords: checked at construction, unknown ones named ------------------------
EXPRESSION_SPEC = "expr:exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"


@pytest.mark.parametrize("spec", LOSSES + [EXPRESSION_SPEC])
def test_unknown_keyword_fails_at_construction(spec):
    from ngl.errors import InputError, one_line

    with pytest.raises(InputError, match=r"unknown keyword 'gama'.*; valid: .*reduction") as info:
        get_loss(spec, gama=1)
    assert "\n" not in one_line(info.value)
    valid = one_line(info.value).split("valid: ")[1].split(", ")
    module = get_loss(spec)
    assert set(valid) >= {"weight", "reduction", "ignore_index", "from_logits"}
    for kw in valid:   # every keyword it calls valid is accepted with the module's own value
        value = module.hparams.get(kw, getattr(module, kw, None))
        if kw == "reduction":
            value = "sum"
        get_loss(spec, **{kw: value})


def test_unknown_keyword_names_the_close_match():
    from ngl.errors import InputError

    with pytest.raises(InputError, match=r"FocalLoss: unknown keyword 'gama' \(did you mean 'gamma'\?\)"):
        get_loss("focal", gama=1)


def test_registry_refuses_a_duplicate_name():
    from ngl.losses import CELoss, register_loss

    with pytest.raises(ValueError, match="already registered"):
        register_loss("ce", label="x", summary="x", reference="x")(CELoss)
    assert get_loss_info("ce").module is CELoss


@pytest.mark.parametrize("case", ["label_too_big", "float_labels", "int_input"])
def test_bad_inputs_are_user_errors(case):
    """The CLI prints ngl's own error types as one line (not a traceback)."""
    from ngl.errors import UserError

    make, _, _ = BAD_INPUTS[case]
    with pytest.raises(UserError):
        get_loss("ngl")(*make())


@pytest.mark.parametrize("spec", LOSSES + [EXPRESSION_SPEC])
@pytest.mark.parametrize("kwargs", [{"from_logits": "yes"}, {"ignore_index": 1.5}, {"ignore_index": True},
                                    {"reduction": "avg"}], ids=["from_logits", "ignore_float", "ignore_bool", "reduction"])
def test_wrongly_typed_keywords_fail_at_construction(spec, kwargs):
    from ngl.errors import InputError

    (name,) = kwargs
    with pytest.raises(InputError, match=name):
        get_loss(spec, **kwargs)


def test_cli_lists_the_registry(capsys):
    """``ngl losses --json`` prints one row per registered loss, from the registry itself."""
    import json

    from ngl.cli import main

    assert main(["losses", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == LOSSES
    by_name = {r["name"]: r for r in rows}
    assert by_name["ngl"]["expression"] == "exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))"
    assert by_name["focal"]["hparams"] == {"gamma": 2.0, "alpha": 0.25, "from_logits": True}
    assert main(["losses", "--published"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith((" ", "Also"))]
    assert listed == list_losses(published=True)

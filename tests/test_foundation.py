"""The shared pieces every package uses: Registry, the error types, layered configuration and the
comparison statistics (Holm against hand-computed values)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from ngl.config import add_config_arguments, from_mapping, layer_defaults, opt
from ngl.errors import InputError, InputTypeError, UnknownNameError, UserError, one_line
from ngl.registry import Registry
from ngl.report.stats import holm, paired_test


def test_registry_refuses_duplicates_and_names_close_matches():
    reg = Registry("widget")
    reg.add("alpha", 1)
    reg.register("beta")(2)
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", 3)
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    assert "did you mean 'alpha'" in str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, UserError)
    assert str(info.value).startswith("unknown widget 'alpah'")   # no KeyError quoting


def test_one_line_folds_and_labels_bugs():
    assert one_line(InputError("bad\nvalue")) == "bad value"
    assert one_line(RuntimeError("boom")) == "RuntimeError: boom"
    assert one_line(KeyError("k")) == "KeyError: k"
    assert len(one_line(InputError("x" * 2000))) == 500


def test_holm_against_hand_computed_values():
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]                        # capped at 1
    assert holm([None, 0.02, float("nan")]) == [None, 0.02, None]  # missing ones do not count in m
    assert holm([]) == []


def test_paired_test_matches_scipy():
    from scipy import stats

    d = [0.4, 1.2, -0.3, 2.0, 0.9]
    r = paired_test(d)
    ref = stats.ttest_1samp(d, 0.0)
    assert r["p_value"] == pytest.approx(ref.pvalue) and r["t"] == pytest.approx(ref.statistic)
    assert r["ci_low"] < r["mean"] < r["ci_high"]


@dataclass
class _Cfg:
    epochs: int = opt(20, "epochs", group="protocol")
    lr: float = opt(1e-3, "learning rate", group="protocol")
    name: str | None = opt(None, "a name")
    seeds: list[int] = opt(help="seeds", factory=lambda: [0, 1])
    amp: bool = opt(True, "autocast")
    hidden: int = opt(3, "not a flag", flag=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p, _Cfg)
    return p


def test_flags_come_from_the_fields():
    p = _parser()
    a = p.parse_args(["--epochs", "3", "--seeds", "4,5", "--no-amp", "--name", "x"])
    assert (a.epochs, a.seeds, a.amp, a.name, a.lr) == (3, [4, 5], False, "x", 1e-3)
    assert not hasattr(a, "hidden")
    text = p.format_help()
    assert "(default: 20)" in text and "(default: None)" not in text and "%%" not in text


def test_precedence_flag_over_file_over_preset_over_default():
    p = _parser()
    layer_defaults(p, [{"epochs": 5, "lr": 0.5}, {"epochs": 7}])    # preset, then file
    assert p.parse_args([]).epochs == 7 and p.parse_args([]).lr == 0.5
    assert p.parse_args(["--epochs", "20"]).epochs == 20     # explicit flag at its default value wins
    with pytest.raises(InputError, match="did you mean 'epochs'"):
        layer_defaults(_parser(), [{"epoch": 5}])


@pytest.mark.parametrize("data, message", [
    ({"epochs": True}, "_Cfg.epochs must be int, got True"),
    ({"epochs": 0.5}, "_Cfg.epochs must be int"),
    ({"lr": float("nan")}, "_Cfg.lr must be float"),
    ({"seeds": [0, "a"]}, r"_Cfg.seeds\[1\] must be int"),
    ({"name": 5}, "_Cfg.name must be str"),
])
def test_from_mapping_refuses_wrong_types(data, message):
    with pytest.raises(InputTypeError, match=message):
        from_mapping(_Cfg, data)


def test_from_mapping_accepts_ints_for_floats_and_names_unknown_keys():
    assert from_mapping(_Cfg, {"lr": 1}).lr == 1.0
    with pytest.raises(InputError, match="unknown _Cfg key 'epoch' .did you mean 'epochs'"):
        from_mapping(_Cfg, {"epoch": 1})

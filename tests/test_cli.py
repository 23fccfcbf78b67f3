"""The command line: grids do what the flags say (shape printed, named axes replace the preset's),
one precedence for configuration (flag > --config file > preset > default), help texts without
"(default: None)", and every command that needs no extra works without deap, ray, keras, TF, JAX."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ngl.cli import build_parser, main
from ngl.losses import list_losses

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _dry_run(capsys, *argv: str) -> tuple[list[dict], str]:
    assert main(["bench", "--dry-run", *argv]) == 0
    cap = capsys.readouterr()
    runs = [json.loads(ln.split(" ", 1)[1]) for ln in cap.out.splitlines() if ln.startswith(tuple("0123456789abcdef")) and " {" in ln]
    return runs, cap.err


# -- issue 13 item 3: grids do what the flags say --------------------------------------------------
def test_named_axes_replace_the_presets_and_the_shape_is_printed(capsys):
    runs, err = _dry_run(capsys, "--datasets", "digits", "--losses", "ce,ngl", "--seeds", "0,1")
    assert len(runs) == 4                                              # not 8: no hidden noise variant
    assert {(r["loss"], r["seed"], r["label_noise"]) for r in runs} == \
        {("ce", 0, 0.0), ("ce", 1, 0.0), ("ngl", 0, 0.0), ("ngl", 1, 0.0)}
    assert "grid: datasets x variants x models x losses x seeds = 1 x 1 x 1 x 2 x 2 = 4 runs" in err
    assert "from preset 'default': models cnn_small" in err and "no label noise" in err
    assert "name --label-noise or --train-fraction to add some" in err
    # naming the variant axis too brings it back
    runs, err = _dry_run(capsys, "--datasets", "digits", "--losses", "ce,ngl", "--seeds", "0,1",
                         "--label-noise", "0,0.2")
    assert len(runs) == 8 and "= 1 x 2 x 1 x 2 x 2 = 8 runs" in err
    # nothing named: the whole preset, and the summary says which axes came from it
    runs, err = _dry_run(capsys)
    n = len(list_losses())
    assert len(runs) == 2 * n * 5
    assert f"= 1 x 2 x 1 x {n} x 5 = {2 * n * 5} runs" in err
    assert "from preset 'default': datasets digits, label_noise 0.0,0.2" in err


def test_precedence_flag_over_file_over_preset(tmp_path, capsys):
    cfg = tmp_path / "grid.json"
    cfg.write_text(json.dumps({"losses": ["ce"], "seeds": [7], "base": {"epochs": 3, "val_fraction": 0.2}}))
    runs, _ = _dry_run(capsys, "--config", str(cfg))
    assert {(r["seed"], r["epochs"]) for r in runs} == {(7, 3)}        # file over preset (epochs 12)
    assert {r["label_noise"] for r in runs} == {0.0, 0.2}               # axes the file leaves: preset's
    # a flag wins over the file, even when it spells the dataclass default
    runs, _ = _dry_run(capsys, "--config", str(cfg), "--seeds", "0,1,2,3,4", "--epochs", "12")
    assert {r["seed"] for r in runs} == {0, 1, 2, 3, 4} and {r["epochs"] for r in runs} == {12}
    # --set adds to the file's base settings; the later one wins
    assert main(["bench", "--dry-run", "--config", str(cfg), "--set", "val_fraction=0.3",
                 "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    from ngl.bench import PRESETS
    from ngl.cli import parse
    args = parse(build_parser(), ["bench", "--config", str(cfg), "--set", "val_fraction=0.3"])
    from ngl.commands.bench import grid_from_args
    grid = grid_from_args(args)
    assert grid.base["val_fraction"] == 0.3 and grid.base["epochs"] == 3
    assert grid.models == PRESETS["default"].models


# -- issue 10 item 6: help texts -------------------------------------------------------------------
@pytest.mark.parametrize("command", ["bench", "demo", "report"])
def test_help_has_no_none_default_and_no_doubled_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "%%" not in text
    options = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    for block in options:
        assert block.count("(default") <= 1, block


# -- issue 10 item 1: extras optional for real -----------------------------------------------------
_BLOCKED = ("deap", "cma", "ray", "keras", "tensorflow", "jax")
_WRAPPER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {src!r})
    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]
    from ngl.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _bare(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    script = tmp_path / "bare_ngl.py"
    script.write_text(_WRAPPER.format(src=SRC, blocked=_BLOCKED))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**env, "RAY_AUTH_MODE": "disabled"})


@pytest.mark.slow
def test_commands_work_without_any_extra(tmp_path):
    for argv in (["--help"], ["losses"], ["train", "--help"], ["demo", "--help"], ["report", "--help"]):
        res = _bare(tmp_path, *argv)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (argv, res.stderr[-2000:])
    out = tmp_path / "b"
    res = _bare(tmp_path, "bench", "--preset", "smoke", "--losses", "ce", "--set", "max_steps=2",
                "--workers", "1", "--out", str(out), "--quiet", "--no-plots")
    assert res.returncode == 0 and "| CE |" in res.stdout, res.stderr[-2000:]
    res = _bare(tmp_path, "report", str(out), "--quiet", "--no-plots", "--out", str(tmp_path / "r"))
    assert res.returncode == 0 and (tmp_path / "r" / "report.json").is_file(), res.stderr[-2000:]


@pytest.mark.parametrize("argv, extra", [
    (["search", "--generations", "1"], "search"),
    (["bench", "--preset", "smoke", "--losses", "ce", "--executor", "ray", "--dry-run"], "ray"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, argv, extra):
    res = _bare(tmp_path, *argv)
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(errors) == 1 and f"pip install 'next-generation-loss[{extra}]'" in errors[0], res.stderr

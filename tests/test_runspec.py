"""The run spec (ngl.runspec): torch-free, one check per field, keys unchanged by the move, one
key per run in a bench, the same label-noise answer from every command."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ngl.cli import COMMANDS, main
from ngl.runspec import TrainConfig, is_expression_spec, run_key

DATA = Path(__file__).resolve().parent / "data"
SRC = str(Path(__file__).resolve().parents[1] / "src")

_PROBE = """
import sys
sys.path.insert(0, {src!r})
import ngl.cli, ngl.runspec, ngl.execution, ngl.search.config, ngl.bench.grid
parser = ngl.cli.build_parser()
for name in {commands!r}:
    try:
        parser.parse_args([name, "--help"])
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "numpy", "deap", "sklearn", "keras") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_every_parser_builds_and_helps_without_torch_or_numpy(capsys):
    """--help of every command but train (whose epilog lists the registries) imports no torch."""
    commands = [c for c in COMMANDS if c != "train"]
    code = _PROBE.format(src=SRC, commands=commands)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "none"


def test_run_keys_are_those_of_stores_written_before_the_move():
    """Golden keys written by the main of before the run-spec move: existing results.sqlite files
    keep their finished rows."""
    golden = json.loads((DATA / "golden_run_keys.json").read_text())["runs"]
    assert len(golden) > 40
    for entry in golden:
        cfg = TrainConfig.from_dict(entry["config"]).check()
        assert run_key(cfg.to_dict()) == cfg.key() == entry["key"], entry["config"]


def test_a_checkpoint_of_the_previous_format_is_refused_with_one_line(tmp_path, capsys):
    pytest.importorskip("deap")
    shutil.copy(DATA / "search_checkpoint_v2.json", tmp_path / "checkpoint.json")
    code = main(["search", "--fitness", "linear", "--population", "4", "--generations", "1",
                 "--out", str(tmp_path), "--resume", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "format version 2" in err and "reads version 3" in err and "--overwrite" in err


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "digits", "--label-noise", "1.0"],
    ["bench", "--datasets", "digits", "--losses", "ce", "--label-noise", "1.0", "--dry-run"],
    ["search", "--label-noise", "1.0", "--generations", "0"],
])
def test_label_noise_one_gets_the_same_answer_from_every_command(argv, tmp_path, capsys):
    if argv[0] == "search":
        pytest.importorskip("deap")
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("label_noise must be in [0, 1), got 1.0"), err


def test_a_bench_computes_each_run_key_once(tmp_path, monkeypatch, capsys):
    """One key per run for the whole command: expand, checks, store, runner, meta."""
    import ngl.bench.grid
    import ngl.runspec

    calls: list[str] = []
    real = ngl.runspec.run_key

    def counting(config):
        calls.append(json.dumps(config, sort_keys=True))
        return real(config)
    monkeypatch.setattr(ngl.runspec, "run_key", counting)
    monkeypatch.setattr(ngl.bench.grid, "run_key", counting)
    assert main(["bench", "--datasets", "digits", "--models", "mlp", "--losses", "ce,expr:p*y",
                 "--seeds", "0,1", "--max-steps", "2", "--epochs", "1", "--workers", "1",
                 "--out", str(tmp_path), "--quiet", "--no-plots", "--no-report"]) == 0
    assert len(calls) == 4 and len(set(calls)) == 4


def test_one_rule_decides_what_is_an_expression(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ngl").write_text("{}")                  # a file shadowing a registered name
    (tmp_path / "found").write_text("{}")
    assert is_expression_spec("expr:p") and is_expression_spec("x.json")
    assert is_expression_spec("found") and not is_expression_spec("ngl", registered={"ngl"})
    from ngl.losses import get_loss
    assert type(get_loss("ngl")).__name__ == "NGLLoss"   # the registry wins over the file


@pytest.mark.parametrize("field, value, message", [
    ("epochs", True, "TrainConfig.epochs must be int"),
    ("seed", 0.5, "TrainConfig.seed must be int"),
    ("lr", float("nan"), "TrainConfig.lr must be float"),
    ("threads", 100_000, "TrainConfig.threads must be in 1..1024"),
    ("image_size", 100_000, "TrainConfig.image_size must be in 1..2048"),
    ("label_noise", -0.1, "TrainConfig.label_noise must be in [0, 1)"),
    ("min_lr", -1.0, "TrainConfig.min_lr must be >= 0"),
])
def test_each_field_is_checked_once_with_one_bound(field, value, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig.from_dict({field: value}).check()

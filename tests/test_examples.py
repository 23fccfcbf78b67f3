"""The plain PyTorch example (examples/pytorch_ngl.py): it learns, it loads a found loss from a
search's JSON, it reads a class-per-folder image tree, and bad input gets one line."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pytorch_ngl.py"


def _example():
    spec = importlib.util.spec_from_file_location("pytorch_ngl", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(stdout: str) -> dict[str, float]:
    """The printed rows 'name  97.5%  3.1s' as {name: accuracy in [0, 1]}."""
    rows = re.findall(r"^(\S+)\s+([\d.]+)%\s+[\d.]+s$", stdout, flags=re.M)
    return {name: float(acc) / 100 for name, acc in rows}


def _run_main(monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["pytorch_ngl.py", *argv])
    _example().main()
    return capsys.readouterr().out


def _ngl_numpy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The published formula, written independently: mean over B x C of
    exp(2.4092 - p (1 + y)) - cos(cos(sin p)), p = softmax(logits), y one-hot."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.eye(logits.shape[1])[labels]
    return float(np.mean(np.exp(2.4092 - p * (1 + y)) - np.cos(np.cos(np.sin(p)))))


def test_a_found_loss_loads_from_its_json_file(tmp_path, rng):
    # a hall-of-fame file as `ngl search` writes it, holding NGL's tree
    doc = {"format": "ngl.expr", "version": 1, "infix": "exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))",
           "tree": ["sub", ["exp", ["sub", 2.4092, ["mul", "p", ["add", 1.0, "y"]]]],
                    ["cos", ["cos", ["sin", "p"]]]], "rank": 0, "fitness": 0.97}
    path = tmp_path / "00.json"
    path.write_text(json.dumps(doc))
    ex = _example()
    logits, labels = rng.normal(size=(6, 10)) * 3, rng.integers(0, 10, size=6)
    want = _ngl_numpy(logits, labels)
    for criterion in (ex.make_criterion(str(path)), ex.make_criterion("ngl")):
        got = criterion(torch.tensor(logits), torch.tensor(labels)).item()
        assert got == pytest.approx(want, rel=1e-6)
    assert isinstance(ex.make_criterion("ce"), torch.nn.CrossEntropyLoss)


@pytest.mark.parametrize("argv, expected", [
    (["--data-dir", "no/such/folder"], "error: --data-dir no/such/folder: no such folder"),
    (["--loss", "missing.json"], "error: --loss missing.json: expression file not found"),
    (["--loss", "ngll"], "error: --loss ngll: unknown loss 'ngll'"),
])
def test_bad_input_is_one_line(monkeypatch, argv, expected):
    monkeypatch.setattr(sys, "argv", ["pytorch_ngl.py", *argv])
    with pytest.raises(SystemExit) as info:
        _example().main()
    message = str(info.value.code)
    assert message.startswith(expected) and "\n" not in message


def test_empty_image_folder_is_one_line(monkeypatch, tmp_path):
    pytest.importorskip("torchvision")
    monkeypatch.setattr(sys, "argv", ["pytorch_ngl.py", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        _example().main()
    assert str(info.value.code).startswith(f"error: --data-dir {tmp_path}: ")
    assert "\n" not in str(info.value.code)


def test_image_folder_tree_trains_and_compares(monkeypatch, capsys, tmp_path):
    """Two classes told apart by colour (red vs blue PNGs): both losses learn them."""
    pytest.importorskip("torchvision")
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (tmp_path / name).mkdir()
        for i in range(20):
            pixels = rng.integers(0, 60, size=(12, 12, 3), dtype=np.uint8)
            pixels[..., channel] += 180
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    out = _run_main(monkeypatch, capsys, "--data-dir", str(tmp_path), "--image-size", "8",
                    "--epochs", "5", "--batch-size", "4", "--no-accel")
    assert "32 train / 8 test images, 2 classes" in out
    table = _table(out)
    assert set(table) == {"ngl", "ce"} and min(table.values()) >= 0.75, out


@pytest.mark.slow
def test_digits_ngl_learns_and_ce_is_printed_beside_it():
    """The documented command, unchanged. Measured: NGL 98.9% (99.2% on 2 threads), CE 97.5%
    (seed 0, 10 epochs); chance is 10%. 90% leaves room for thread/platform non-determinism yet
    fails any loss that does not train (a sign error or a dead gradient stays far below it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--no-accel"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = _table(proc.stdout)
    assert set(table) == {"ngl", "ce"}, proc.stdout
    assert table["ngl"] >= 0.90 and table["ce"] >= 0.90, proc.stdout

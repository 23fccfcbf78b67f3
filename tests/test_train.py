"""The training harness: config round trip, determinism, outputs, divergence, failures, resume, CLI."""
from __future__ import annotations

import csv
import json

import pytest

from ngl.errors import UserError
import torch

import ngl.harness.loop as L
import ngl.train as T
from ngl.cli import main
from ngl.data import list_datasets
from ngl.losses import list_losses
from ngl.models import list_models
from ngl.train import RunResult, TrainConfig, train

FAST = dict(dataset="digits", model="mlp", epochs=2, batch_size=64, threads=1)


def test_config_round_trip_and_unknown_keys():
    cfg = TrainConfig(loss="focal", loss_kwargs={"gamma": 1.5}, augment=True, image_size=16)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and TrainConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig key 'epoch' \(did you mean 'epochs'\?\)"):
        TrainConfig.from_dict({"epoch": 3, "lrate": 0.1})


@pytest.mark.parametrize("field,value", [("epochs", 0), ("label_noise", 1.5), ("val_fraction", 1.0),
                                         ("device", "tpu"), ("train_fraction", 0.0)])
def test_bad_configs_raise_before_training(field, value):
    with pytest.raises(ValueError, match=field):
        train(TrainConfig(**{**FAST, field: value}), progress=False)


def test_unknown_names_and_missing_data_raise(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset 'mnist'"):
        train(TrainConfig(**{**FAST, "dataset": "mnist"}), progress=False)
    with pytest.raises(KeyError, match="unknown model 'vgg'"):
        train(TrainConfig(**{**FAST, "model": "vgg"}), progress=False)
    with pytest.raises(UserError, match="unknown loss .hinge.; registered: ce"):
        train(TrainConfig(**{**FAST, "loss": "hinge"}), progress=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        train(TrainConfig(**{**FAST, "dataset": "cifar10", "data_dir": str(tmp_path)}), progress=False)


def test_run_is_deterministic_and_learns(tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 3, "loss": "ngl"})
    a = train(cfg, out_dir=tmp_path / "a", progress=False)
    b = train(cfg, progress=False)
    assert isinstance(a, RunResult) and a.status == "ok" and a.error is None
    assert a.history == [{**h, "time": a.history[i]["time"]} for i, h in enumerate(b.history)]
    assert a.test_accuracy == b.test_accuracy and a.test_accuracy > 0.8
    assert [h["epoch"] for h in a.history] == [1, 2, 3] and a.epochs_run == 3
    n_train = 1797 - 359 - 144
    assert a.steps == 3 * -(-n_train // 64)
    assert a.best_val_accuracy == max(h["val_accuracy"] for h in a.history)
    assert a.val_accuracy == a.history[-1]["val_accuracy"]
    c = train(TrainConfig(**{**FAST, "epochs": 3, "loss": "ngl", "seed": 1}), progress=False)
    assert c.history[0]["loss"] != a.history[0]["loss"]
    # outputs
    out = tmp_path / "a"
    saved = json.loads((out / "result.json").read_text())
    assert saved["test_accuracy"] == a.test_accuracy and saved["config"] == cfg.to_dict()
    conf = json.loads((out / "config.json").read_text())
    assert conf["resolved_augment"] == "none" and conf["resolved_image_size"] == 8
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [float(r["val_accuracy"]) for r in rows] == [h["val_accuracy"] for h in a.history]
    assert json.loads((out / "history.json").read_text()) == a.history
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def trained_models(monkeypatch):
    """A list that receives the model object of every train() run (spy on the harness's setup)."""
    models = []
    real_setup = T.setup

    def spy(cfg):
        run = real_setup(cfg)
        models.append(run.model)
        return run
    monkeypatch.setattr(T, "setup", spy)
    return models


def test_reported_accuracy_matches_an_independent_evaluation(trained_models):
    """Capture the trained model and recompute test accuracy by hand on the same split."""
    from ngl.data import load_dataset

    r = train(TrainConfig(**FAST), progress=False)
    d = load_dataset("digits", seed=0)
    model = trained_models[-1].eval()
    with torch.no_grad():
        pred = model(d.x_test.float() / 127.5 - 1).argmax(1)
    assert r.test_accuracy == (pred == d.y_test).sum().item() / len(d.y_test)


def test_max_steps_and_lr_schedule():
    r = train(TrainConfig(**{**FAST, "max_steps": 5, "epochs": 10}), progress=False)
    assert r.steps == 5 and r.epochs_run == 1 and r.status == "ok"
    # a plateau of 0 patience drops lr by 0.2 whenever val accuracy does not improve, floor min_lr
    s = train(TrainConfig(**{**FAST, "epochs": 6, "plateau_patience": 0, "lr": 1e-3, "min_lr": 4e-5}),
              progress=False)
    lrs = [h["lr"] for h in s.history]
    vals = [h["val_accuracy"] for h in s.history]
    expect, best, lr = [], -1.0, 1e-3
    for v in vals:
        if v > best:
            best = v
        else:
            lr = max(lr * 0.2, 4e-5)
        expect.append(lr)
    assert lrs == pytest.approx(expect)


def test_divergence_is_a_status_not_a_crash(tmp_path):
    r = train(TrainConfig(**{**FAST, "loss": "expr:exp(1000 * p)"}), out_dir=tmp_path, progress=False)
    assert r.status == "diverged" and r.error.startswith("diverged at epoch 1 (loss ")
    assert r.test_accuracy is None and r.epochs_run == 0
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"


def test_exceptions_in_the_loop_are_recorded(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(L, "evaluate", boom)
    r = train(TrainConfig(**FAST), progress=False)
    assert r.status == "failed" and r.error == "RuntimeError: boom second line" and r.steps > 0


def test_ce_l2_penalty_is_added_by_the_trainer(trained_models):
    def kernel_norm(l2):
        r = train(TrainConfig(**{**FAST, "loss": "ce_l2", "loss_kwargs": {"l2": l2}}), progress=False)
        return r, sum(w.square().sum().item() for w in trained_models[-1].parameters() if w.ndim >= 2)

    r0, n0 = kernel_norm(0.0)
    r1, n1 = kernel_norm(0.5)
    assert n1 < 0.5 * n0                                 # the penalty shrank the kernels
    assert r1.history[0]["loss"] > r0.history[0]["loss"]  # and is part of the reported loss


def test_label_noise_reaches_training():
    clean = train(TrainConfig(**{**FAST, "epochs": 3}), progress=False)
    noisy = train(TrainConfig(**{**FAST, "epochs": 3, "label_noise": 0.8}), progress=False)
    assert noisy.history[-1]["accuracy"] < clean.history[-1]["accuracy"] - 0.3


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = TrainConfig(**{**FAST, "epochs": 3, "model": "cnn_small"})
    full = train(cfg, out_dir=tmp_path / "full", progress=False)
    real = L.write_history
    calls = {"n": 0}

    def interrupt(out, history):
        real(out, history)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(L, "write_history", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(L, "write_history", real)
    resumed = train(cfg, out_dir=tmp_path / "cut", progress=False)
    strip = lambda hs: [{k: v for k, v in h.items() if k != "time"} for h in hs]   # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test_accuracy == full.test_accuracy and resumed.steps == full.steps


def test_augmentation_default_and_override(tmp_path):
    r = train(TrainConfig(**{**FAST, "epochs": 1, "augment": True}), out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["resolved_augment"] == "flip,shift,zoom"
    plain = train(TrainConfig(**{**FAST, "epochs": 1}), progress=False)
    assert r.history[0]["loss"] != plain.history[0]["loss"]


def test_cli_help_lists_registries(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in list_datasets() + list_models() + list_losses() + ["folder:PATH", "npz:PATH", "expr:"]:
        assert name in text
    assert "10% validation" in text and "%%" not in text


def test_flags_are_generated_from_the_config_and_layered_over_the_file(tmp_path):
    """Every TrainConfig field has a flag; flag > --config file > default, even when the flag
    repeats the default value."""
    from dataclasses import fields

    from ngl.cli import build_parser, parse
    from ngl.commands.train import config_from_args

    parser = build_parser()
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 3, "lr": 0.01, "augment": "shift", "resolved_model": "x"}))
    args = parse(parser, ["train", "--config", str(f), "--epochs", "20"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.model) == (20, 0.01, "shift", "auto")
    assert config_from_args(parse(build_parser(), ["train"])) == TrainConfig()
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for fld in fields(TrainConfig):
        assert "--" + fld.name.replace("_", "-") in help_text
    f.write_text(json.dumps({"epochs": "3"}))
    with pytest.raises(TypeError, match="TrainConfig.epochs must be int"):
        parse(build_parser(), ["train", "--config", str(f)])


def test_cli_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--model", "cnn_small", "--loss", "ngl", "--epochs", "2",
                 "--seed", "0", "--threads", "1", "--out", str(out), "--quiet", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "ok" and res["config"]["loss"] == "ngl" and len(res["history"]) == 2
    assert json.loads((out / "result.json").read_text())["test_accuracy"] == res["test_accuracy"]
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"model": "mlp", "epochs": 1, "lr": 0.01}))
    assert main(["train", "--config", str(cfg_file), "--epochs", "2", "--out", str(tmp_path / "r2"),
                 "--quiet", "--loss-kwargs", '{"gamma": 1.0}', "--loss", "focal"]) == 0
    saved = json.loads((tmp_path / "r2" / "result.json").read_text())["config"]
    assert saved["model"] == "mlp" and saved["epochs"] == 2 and saved["lr"] == 0.01
    assert saved["loss_kwargs"] == {"gamma": 1.0}
    assert main(["train", "--dataset", "nope", "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["train", "--loss", "expr:exp(1000*p)", "--model", "mlp", "--quiet",
                 "--out", str(tmp_path / "d")]) == 1


def test_expression_file_and_infix_losses(tmp_path):
    from ngl.expr import NGL, save

    path = save(NGL, tmp_path / "ngl_expr.json")
    by_file = train(TrainConfig(**{**FAST, "loss": str(path), "max_steps": 4}), progress=False)
    by_name = train(TrainConfig(**{**FAST, "loss": "ngl", "max_steps": 4}), progress=False)
    by_infix = train(TrainConfig(**{**FAST, "loss": "expr:exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))",
                                     "max_steps": 4}), progress=False)
    assert by_file.status == by_infix.status == "ok"
    assert by_file.history[0]["loss"] == pytest.approx(by_name.history[0]["loss"], rel=1e-5)
    assert by_infix.history[0]["loss"] == pytest.approx(by_name.history[0]["loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model,size", [("resnet50", 32), ("inception_v3", 75)])
def test_backbones_through_the_harness(tmp_path, model, size):
    """Gray 16x16 npz images -> channel repeat, augmentation, upsampling to the model's input."""
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (30, 16, 16), generator=rng, dtype=torch.uint8).numpy()
    y = (torch.arange(30) % 3).numpy()
    import numpy as np
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    r = train(TrainConfig(dataset=f"npz:{tmp_path / 'tiny.npz'}", model=model, loss="ce_l2", batch_size=8,
                          epochs=1, max_steps=2, image_size=size, augment=True, threads=1),
              out_dir=tmp_path / "run", progress=False)
    assert r.status == "ok", r.error
    assert r.steps == 2 and 0.0 <= r.test_accuracy <= 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved_image_size"] == size


def test_restore_best_reports_the_best_validation_weights(tmp_path):
    from dataclasses import replace

    from ngl.train import evaluate, setup

    cfg = TrainConfig(dataset="digits", model="mlp", epochs=4, lr=0.05, seed=2, label_noise=0.3)
    res = train(cfg, out_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["best_val"] == max(h["val_accuracy"] for h in res.history)
    assert saved["best_val"] > res.history[-1]["val_accuracy"]      # the best epoch is not the last
    run = setup(cfg)
    data, model, prep = run.data, run.model, run.prep
    model.load_state_dict(saved["best_model"])
    assert res.test_accuracy == evaluate(model, data.x_test, data.y_test, prep)
    model.load_state_dict(saved["model"])                      # the last epoch's weights
    last = evaluate(model, data.x_test, data.y_test, prep)
    assert train(replace(cfg, restore_best=False), progress=False).test_accuracy == last

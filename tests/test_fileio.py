"""ngl.fileio: atomic writes leave either the old or the new file, never half of one."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ngl import fileio


def test_write_json_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.json"
    fileio.write_json_atomic(path, {"x": 1})
    fileio.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    fileio.write_json_atomic(path, {"x": 1})
    with pytest.raises(ValueError):
        fileio.write_json_atomic(path, {"x": float("nan")})   # strict JSON refuses NaN

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", crash)           # dies between write and rename
    with pytest.raises(OSError):
        fileio.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_csv_atomic_columns(tmp_path):
    path = fileio.write_csv_atomic(tmp_path / "h.csv", [{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "1,2"]


@pytest.mark.parametrize("content, message", [(None, "not found"), ("{oops", "not valid JSON"),
                                               ("[1, 2]", "must hold a JSON object")])
def test_read_json_object_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "cfg.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as info:
        fileio.read_json_object(path, what="grid config")
    assert "grid config" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)],
                         ids=["022", "027", "077"])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    """Reports and JSON outputs get what ``open(path, "w")`` gives (0644 under umask 022), as the
    store does, not mkstemp's 0600; a figure too."""
    old = os.umask(umask)
    try:
        written = [fileio.write_json_atomic(tmp_path / "a.json", {"x": 1}),
                   fileio.write_text_atomic(tmp_path / "r.md", "# report\n"),
                   fileio.write_csv_atomic(tmp_path / "r.csv", [{"a": 1}], ["a"])]
        plt = fileio.pyplot()
        written.append(fileio.save_figure(plt.figure(figsize=(1, 1)), tmp_path / "f.png"))
        with open(tmp_path / "plain.txt", "w") as fh:                # the reference
            fh.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [mode] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "f.png", "plain.txt", "r.csv", "r.md"]

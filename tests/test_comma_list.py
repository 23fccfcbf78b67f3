"""ngl.config.comma_list: the flags' comma lists split only where a comma separates items (issue
20 item 10): not inside an infix the search printed, not inside an existing path."""
from __future__ import annotations

import argparse

import pytest

from ngl.config import comma_list


def test_a_found_loss_infix_stays_whole():
    parse = comma_list(str)
    assert parse("ce,expr:max(p, y) - y * log(p),ngl") == ["ce", "expr:max(p, y) - y * log(p)", "ngl"]
    assert parse("expr:min(p, max(y, 0.5)) * log(p), focal") == ["expr:min(p, max(y, 0.5)) * log(p)", "focal"]
    assert parse("ce,,ngl, ") == ["ce", "ngl"]
    assert parse("expr:max(p, y") == ["expr:max(p, y"]           # unbalanced: left to the parser's message
    assert comma_list(float)("0.1, 0.2") == [0.1, 0.2]
    with pytest.raises(argparse.ArgumentTypeError, match="expected comma-separated int values"):
        comma_list(int)("1,two")


def test_the_loss_flag_parses_a_found_infix():
    from ngl.losses import get_loss

    parser = argparse.ArgumentParser()
    parser.add_argument("--losses", type=comma_list(str))
    specs = parser.parse_args(["--losses", "ce,expr:max(p, y) - y*log(p)"]).losses
    assert specs == ["ce", "expr:max(p, y) - y*log(p)"]
    get_loss(specs[1])                                             # builds: "max(p" was the old split


def test_an_existing_path_with_a_comma_is_one_item(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a,b.npz").write_bytes(b"")
    (tmp_path / "imgs,2024").mkdir()
    parse = comma_list(str)
    assert parse("npz:a,b.npz") == ["npz:a,b.npz"]
    assert parse("digits,npz:a,b.npz,folder:imgs,2024") == ["digits", "npz:a,b.npz", "folder:imgs,2024"]
    assert parse(f"npz:{tmp_path / 'a,b.npz'},cifar10") == [f"npz:{tmp_path / 'a,b.npz'}", "cifar10"]
    assert parse("npz:x,y.npz") == ["npz:x", "y.npz"]             # no such file: commas split as usual
    (tmp_path / "a").write_bytes(b"")
    assert parse("npz:a,b.npz") == ["npz:a,b.npz"]                # both exist: the longest wins
    assert comma_list(int)("1,2") == [1, 2]                        # numbers are never paths

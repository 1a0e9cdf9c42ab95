"""YAML input that would hang or blow up ``ferry apply`` is refused at once (issue 13 item 4)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from snapshots.errors import ConfigError
from snapshots.model.yamlfile import read_yaml


def _laughs(levels: int, fan_out: int) -> str:
    lines = ["project: X", "l0: &l0 [" + ", ".join(["lol"] * fan_out) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan_out) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("levels", "fan_out"), [(10, 10), (25, 2)], ids=["billion-laughs", "24-doublings"])
def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path: Path, levels: int, fan_out: int) -> None:
    """Sub-kilobyte files that expand to 10^10 and 2^25 values: minutes (the duplicate-key check re-walked every
    alias) or ~57 s before; now counted per node once."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(levels, fan_out))
    assert path.stat().st_size < 1024
    started = time.process_time()
    with pytest.raises(ConfigError, match=r"bomb\.yaml:\d+: YAML aliases expand to more than 100,000 values"):
        read_yaml(path)
    assert time.process_time() - started < 0.5


def test_ordinary_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("project: X\ncommon: &c {a: 1, b: [1, 2]}\none: *c\ntwo: *c\n")
    assert read_yaml(path).data["two"] == {"a": 1, "b": [1, 2]}


@pytest.mark.parametrize("text", ["[" * 20000, "{a: " * 20000, "- " * 20000 + "x"], ids=["flow-lists", "flow-maps",
                                                                                       "block-lists"])
def test_deep_nesting_is_one_line_quickly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text + "\n")
    started = time.process_time()
    with pytest.raises(ConfigError, match=r"deep\.yaml(:1)?: malformed YAML: (more than 1000 nested|mappings or lists "
                                          r"nested too deeply)"):
        read_yaml(path)
    assert time.process_time() - started < 1


def test_a_duplicate_key_behind_an_alias_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("project: X\nbase: &b {a: 1}\nother: {x: 1, x: 2}\nthird: *b\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml:3: duplicate key 'x'"):
        read_yaml(path)

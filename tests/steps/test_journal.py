"""The target journal a deployment keeps in memory while it holds the target (``journal.hold``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps import journal
from steps.transports.local import LocalTransport


class CountingTransport(LocalTransport):
    """A local target that counts the journal's reads, and whose writes fail while ``broken``."""

    def __init__(self, target: str, root: Path) -> None:
        super().__init__(target, root)
        self.reads = 0
        self.broken = False

    def read_file(self, remote: str) -> bytes | None:
        self.reads += 1
        return super().read_file(remote)

    def write_file(self, remote: str, data: bytes, mode: int | None = None) -> None:
        if self.broken:
            raise OSError("connection lost")
        super().write_file(remote, data, mode)


def _on_disk(root: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((root / journal.JOURNAL_FILE).read_text())
    return loaded


def test_a_held_journal_is_read_once_and_every_update_still_reaches_the_target(tmp_path: Path) -> None:
    target = CountingTransport("web-01", tmp_path)
    journal.write(target, "Other", "Prod", {"release": "9.9.9"})  # another project's entry, written before
    journal.hold(target)
    assert journal.read(target, "Shop", "Prod") is None
    for done in ([], [0], [0, 1]):
        journal.mark(target, "Shop", "Prod", {"release": "1.2.0", "unit": 0, "done": done})
        assert _on_disk(tmp_path)["Shop/Prod"] == {journal.IN_PROGRESS: {"release": "1.2.0", "unit": 0, "done": done}}
    journal.write(target, "Shop", "Prod", {"release": "1.2.0"})
    assert target.reads == 2  # the write before hold(), then the first read after it: none per marker
    on_disk = _on_disk(tmp_path)
    assert on_disk["Shop/Prod"] == {"release": "1.2.0", "history": []}  # the marker went with the entry
    assert on_disk["Other/Prod"]["release"] == "9.9.9"  # type: ignore[index]  # other entries kept


def test_a_journal_that_is_not_held_is_read_before_every_update(tmp_path: Path) -> None:
    target = CountingTransport("web-01", tmp_path)
    journal.mark(target, "Shop", "Prod", {"release": "1.2.0", "unit": 0, "done": []})
    journal.mark(target, "Shop", "Prod", {"release": "1.2.0", "unit": 0, "done": [0]})
    assert target.reads == 2  # `ferry target check` and friends see what is on the target now


def test_a_failed_write_forgets_the_held_copy(tmp_path: Path) -> None:
    target = CountingTransport("web-01", tmp_path)
    journal.hold(target)
    journal.mark(target, "Shop", "Prod", {"release": "1.2.0", "unit": 0, "done": []})
    target.broken = True
    with pytest.raises(OSError):
        journal.mark(target, "Shop", "Prod", {"release": "1.2.0", "unit": 0, "done": [0]})
    target.broken = False
    reads = target.reads
    assert journal.read(target, "Shop", "Prod") == {journal.IN_PROGRESS: {"release": "1.2.0", "unit": 0, "done": []}}
    assert target.reads == reads + 1  # what the target holds was read again, not the copy that never landed

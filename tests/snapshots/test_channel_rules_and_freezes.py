"""Channel version rules and freeze windows, as functions: the ranges Octopus users write (NuGet intervals,
comparators), pre-release tag regexes, the version a channel picks from a feed, and weekly freeze windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from snapshots.channels import all_channels, broken_rule, pick_version
from snapshots.freezes import active, window_at
from snapshots.model import Infrastructure, Project
from snapshots.model.channels import Channel
from snapshots.model.freezes import Freeze
from snapshots.version_ranges import RangeSyntaxError, parse_range


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("[1.0,2.0)", ["1.0.0", "1.9.9", "2.0.0-rc.1"], ["0.9.9", "2.0.0"]),
    ("(1.0,)", ["1.0.1"], ["1.0.0"]),
    ("(,2.0]", ["2.0.0", "0.1.0"], ["2.0.1"]),
    ("[1.4.2]", ["1.4.2"], ["1.4.3"]),
    ("1.2", ["1.2.0", "9.0.0"], ["1.1.9"]),
    (">=1.2 <2", ["1.2.0", "1.99.0"], ["1.1.0", "2.0.0"]),
    ("> 1.0.0, <= 3", ["3.0.0"], ["1.0.0"]),
])
def test_version_ranges(text: str, inside: list[str], outside: list[str]) -> None:
    parsed = parse_range(text)
    assert all(parsed.contains(v) for v in inside) and not any(parsed.contains(v) for v in outside)


@pytest.mark.parametrize("text", ["[2.0,1.0)", "[1.0", "(1.0)", ">=x", ">=2 <1", "", "1.0.0.0"])
def test_bad_ranges_say_so_in_one_line(text: str) -> None:
    with pytest.raises(RangeSyntaxError, match="version range"):
        parse_range(text)


def test_tag_rules_and_the_version_a_channel_picks() -> None:
    stable = Channel.model_validate({"name": "Stable", "rules": [{"version_range": "[1.0,2.0)", "tag": "^$"}]})
    beta = Channel.model_validate({"name": "Beta", "rules": [{"packages": ["Web"], "tag": "^beta"}]})
    feed = ["1.0.0", "1.5.0", "1.6.0-beta.2", "2.0.0", "2.1.0-rc.1"]
    assert pick_version(stable, "Web", feed) == "1.5.0"
    assert pick_version(beta, "Web", feed) == "1.6.0-beta.2"
    assert pick_version(beta, "Api", feed) == "2.0.0"  # no rule for Api: newest stable
    rule = broken_rule(stable, "Web", "1.6.0-beta.2")
    assert rule is not None and rule.describe() == "version_range [1.0,2.0) and tag '^$'"
    with pytest.raises(ValidationError, match="tag '\\(' is not a regular expression"):
        Channel.model_validate({"name": "X", "rules": [{"tag": "("}]})


def test_the_default_channel_is_implicit_unless_one_is_marked() -> None:
    base = {"project": "P", "lifecycle": "L"}
    assert [c.name for c in all_channels(Project.model_validate(base))] == ["Default"]
    marked = Project.model_validate({**base, "channels": [{"name": "Beta"}, {"name": "Stable", "default": True}]})
    assert [c.name for c in all_channels(marked)] == ["Stable", "Beta"]
    unmarked = Project.model_validate({**base, "channels": [{"name": "Beta"}]})
    assert [(c.name, c.lifecycle) for c in all_channels(unmarked)] == [("Default", "L"), ("Beta", None)]


def test_a_weekly_freeze_repeats_and_a_one_off_one_does_not() -> None:
    saturday = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    weekend = Freeze.model_validate({"name": "Weekend", "start": saturday, "end": saturday + timedelta(days=2),
                                     "environments": ["Prod"], "reason": "nobody on call", "recurrence": "weekly",
                                     "until": saturday + timedelta(weeks=4)})
    assert window_at(weekend, saturday + timedelta(weeks=2, hours=5)) is not None
    assert window_at(weekend, saturday + timedelta(weeks=2, days=3)) is None
    assert window_at(weekend, saturday + timedelta(weeks=5)) is None  # after until
    assert window_at(weekend, saturday - timedelta(hours=1)) is None
    infra = Infrastructure.model_validate({"environments": [{"name": "Prod"}], "freezes": [weekend.model_dump()]})
    found = active(infra, "Shop", "Prod", saturday + timedelta(weeks=1, hours=1))
    assert found is not None and found.end == saturday + timedelta(weeks=1, days=2)
    assert active(infra, "Shop", "Dev", saturday + timedelta(hours=1)) is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"end": "2026-01-01T00:00:00Z"}, "end 2026-01-01T00:00:00\\+00:00 is not after start"),
    ({"start": "2026-02-01T00:00:00"}, "timezone"),
    ({"recurrence": "weekly", "end": "2026-02-09T00:00:00Z"}, "shorter than 7 days"),
])
def test_bad_freezes(fields: dict[str, str], message: str) -> None:
    base = {"name": "F", "start": "2026-02-01T00:00:00Z", "end": "2026-02-02T00:00:00Z", "environments": ["Prod"],
            "reason": "r"}
    with pytest.raises(ValidationError, match=message):
        Freeze.model_validate({**base, **fields})

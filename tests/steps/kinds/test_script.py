"""The script step's body: sent as written, but for Octostache's ``##{`` escape (issue 13 item 3)."""

from __future__ import annotations

import subprocess

import pytest

from snapshots.octostache import escape
from steps.kinds.script import unescape


@pytest.mark.parametrize(("body", "sent"), [
    ('echo "##{not a variable}"', 'echo "#{not a variable}"'),
    ("####{two}", "##{two}"),
    ("${#array[@]} and # {spaced}", "${#array[@]} and # {spaced}"),
    ("##{a} ##{b}", "#{a} #{b}"),
])
def test_the_escape_is_undone_before_the_script_runs(body: str, sent: str) -> None:
    assert unescape(body) == sent


def test_unescape_inverts_octostache_escape() -> None:
    text = 'puts "#{name}" # and ##{kept}\nruby -e \'p "#{1 + 1}"\''
    assert unescape(escape(text)) == text


def test_bash_receives_a_literal_interpolation() -> None:
    """What ``apply`` asks for (``##{``) reaches bash as the ``#{`` the author meant."""
    out = subprocess.run(["bash", "-c", unescape("printf '%s' '##{Site.Host}'")], capture_output=True, text=True,
                         check=True).stdout
    assert out == "#{Site.Host}"

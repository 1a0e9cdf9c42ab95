"""The masker that every log line, artifact and error passes through."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapshots.variables.masking import MASK, Masker, MaskingFilter, install_masking_filter

SECRET = "Tr0ub4dor&3 +/?é"


@pytest.mark.parametrize("form", [
    SECRET,
    base64.b64encode(SECRET.encode()).decode(),
    base64.b64encode(SECRET.encode()).decode().rstrip("="),
    base64.urlsafe_b64encode(SECRET.encode()).decode(),
    base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    quote(SECRET),
    quote(SECRET, safe=""),
    quote_plus(SECRET),
    json.dumps(SECRET)[1:-1],
    json.dumps(SECRET, ensure_ascii=False)[1:-1],
    SECRET.encode().hex(),
    SECRET.encode().hex().upper(),
], ids=["plain", "b64", "b64-nopad", "b64url", "b64url-nopad", "quote", "quote-nosafe", "quote_plus",
        "json", "json-unicode", "hex", "hex-upper"])
def test_every_encoded_form_is_masked(form: str) -> None:
    masker = Masker([SECRET])
    out = masker.mask(f"before {form} after")
    assert out == f"before {MASK} after"


def test_secret_inside_a_longer_hex_dump_is_masked() -> None:
    # `printf 'deploy:%s' "$PASSWORD" | xxd -p` prints the password's bytes as hex after the user name's
    password = "correct horse battery staple"
    dump = f"deploy:{password}\n".encode().hex()
    out = Masker([password]).mask(f"payload {dump}")
    assert out == f"payload {b'deploy:'.hex()}{MASK}0a"
    assert password.encode().hex() not in out


def test_secret_inside_a_longer_base64_blob_is_masked() -> None:
    # curl -u deploy:<password> sends "Authorization: Basic base64(deploy:<password>)"
    password = "correct horse battery staple"
    masker = Masker([password])
    for user in ("deploy", "ci", "x"):  # the three byte alignments
        header = "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        out = masker.mask(header)
        assert out.count(MASK) == 1
        # what survives is the user name's part plus at most the 1-2 characters mixing in the padding
        survivors = out.removeprefix("Authorization: Basic ").replace(MASK, "")
        assert len(survivors) <= len(base64.b64encode(f"{user}:".encode())) + 2


def test_longest_first_and_overlaps() -> None:
    masker = Masker(["pass", "password123", "word123456"])
    assert masker.mask("x password123 y") == f"x {MASK} y"
    assert masker.mask("pass-password123456") == f"{MASK}-{MASK}"  # overlapping secrets: one run
    assert masker.mask("passport") == f"{MASK}port"


def test_short_values_are_not_masked() -> None:
    masker = Masker(["abc", "", "12", "abcd"])
    assert masker.mask("abc 12 abcd") == f"abc 12 {MASK}"
    assert Masker(["yes"]).mask("yes") == "yes"


def test_multiline_secret_is_masked_line_by_line() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjEAAAAA\r\nQyNTUxOQAAACDx\r\nab\r\n" \
          "-----END OPENSSH PRIVATE KEY-----\r\n"
    masker = Masker([key])
    assert masker.mask(key) == MASK
    assert masker.mask("line: b3BlbnNzaC1rZXktdjEAAAAA") == f"line: {MASK}"
    assert masker.mask("QyNTUxOQAAACDx\n") == f"{MASK}\n"
    assert masker.mask("ab") == "ab"  # a 2-character line is not a secret on its own
    assert masker.mask(json.dumps({"key": key})) == json.dumps({"key": "X"}).replace("X", MASK)


def test_values_added_later_and_empty_masker() -> None:
    assert Masker().mask("anything at all") == "anything at all"
    masker = Masker()
    masker.add("first-secret")
    assert masker.mask("first-secret second-secret") == f"{MASK} second-secret"
    masker.add("second-secret")
    assert masker.mask("first-secret second-secret") == f"{MASK} {MASK}"


def test_regex_metacharacters_in_secrets() -> None:
    masker = Masker(["a.b*c(d)[e]", "^$|\\"])
    assert masker.mask("xa.b*c(d)[e]x aXbbc(d)[e] ^$|\\") == f"x{MASK}x aXbbc(d)[e] {MASK}"


def test_mask_obj_recurses_into_containers() -> None:
    masker = Masker(["s3cr3t-value"])
    obj = {"rows": [{"target": "web01", "env": "PASSWORD=s3cr3t-value"}, ("s3cr3t-value", 3)],
           "s3cr3t-value": None, "n": 1.5}
    assert masker.mask_obj(obj) == {"rows": [{"target": "web01", "env": f"PASSWORD={MASK}"}, (MASK, 3)],
                                    MASK: None, "n": 1.5}
    assert obj["rows"][0]["env"] == "PASSWORD=s3cr3t-value"  # the input is not modified


# ---------------------------------------------------------------------------------------------- logging


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("ferry.test.masking")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, stream
    log.removeHandler(handler)


def test_filter_masks_message_and_args(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    masker = Masker(["hunter2-db-pass"])
    log.handlers[0].addFilter(MaskingFilter(masker))
    log.info("connecting with %s to %r", "hunter2-db-pass", {"pw": "hunter2-db-pass"})
    log.info("bad format %d", "hunter2-db-pass")  # must neither raise nor leak
    text = stream.getvalue()
    assert "hunter2" not in text
    assert f"INFO connecting with {MASK} to {{'pw': '{MASK}'}}" in text
    assert "bad format" in text


def test_filter_masks_exception_text(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    masker = Masker(["hunter2-db-pass"])
    log.handlers[0].addFilter(MaskingFilter(masker))
    try:
        raise RuntimeError("login failed for password hunter2-db-pass")
    except RuntimeError:
        log.exception("step failed")
    text = stream.getvalue()
    assert "hunter2" not in text
    assert "Traceback (most recent call last)" in text
    assert f"RuntimeError: login failed for password {MASK}" in text


def test_install_masking_filter_covers_handlers_and_can_be_removed() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("ferry.test.install")
    parent.propagate = False
    parent.addHandler(handler)
    try:
        remove = install_masking_filter(Masker(["api-key-123456"]), logger_names=("ferry.test.install",))
        logging.getLogger("ferry.test.install.child").warning("key=%s", "api-key-123456")
        remove()
        logging.getLogger("ferry.test.install.child").warning("key=%s", "api-key-123456")
        assert stream.getvalue() == f"key={MASK}\nkey=api-key-123456\n"
        assert handler.filters == []
    finally:
        parent.removeHandler(handler)


def test_install_masking_filter_on_default_prefect_loggers_is_reversible() -> None:
    root_handlers = logging.getLogger().handlers
    remove = install_masking_filter(Masker(["whatever-secret"]))
    try:
        assert all(any(isinstance(f, MaskingFilter) for f in h.filters) for h in root_handlers)
    finally:
        remove()
    assert not any(isinstance(f, MaskingFilter) for h in root_handlers for f in h.filters)


# ------------------------------------------------------------------------------------------- property

_text = st.text(alphabet=st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(secret=_text.filter(lambda s: len(s) > 3), before=_text, after=_text, others=st.lists(_text, max_size=3))
def test_masked_output_never_contains_the_secret(secret: str, before: str, after: str, others: list[str]) -> None:
    masker = Masker([secret, *others])
    out = masker.mask(before + secret + after + secret)
    assert secret not in out
    assert masker.mask_obj({"k": [before + secret]})["k"][0].count(secret) == 0

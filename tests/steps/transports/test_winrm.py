"""The WinRM transport against the WS-Management STAND-IN (real WS-Man protocol, real NTLM/TLS; PowerShell and
IIS emulated — see tests/standins/wsman_standin.py). The same transport against real Windows: test_winrm_windows.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
import requests

from snapshots.errors import SnapshotIntegrityError, TransportError
from steps.transports.winrm import WinRmTransport, bootstrap_line, decode_clixml, request_payload
from tests.standins.windows_lab import Standin
from tests.steps.conftest import ECHO_SCRIPT

TRICKY = {
    "quotes": "it's \"quoted\" ''twice''",
    "subexpression": "$(Remove-Item C:\\ -Recurse) and $env:PATH and ${x}",
    "backticks": "`n `t `` `$ not escapes",
    "newlines": "line one\nline two\r\nline three\n",
    "unicode": "Zürich — 東京 ✓",
    "semicolons": "a; exit 7; b | Out-Null & c",
    "empty": "",
}


def echo(transport: WinRmTransport, values: object, *, env: dict[str, str] | None = None,
         data: dict[str, object] | None = None) -> dict[str, object]:
    result, lines = transport.invoke(ECHO_SCRIPT.read_text(encoding="utf-8"),
                                     parameters={"Values": values, "EnvNames": sorted(env or {})},
                                     env=env, data=data)
    assert result.ok, result.output_tail
    reply = next(line for line in lines if line.startswith("##ferry-echo "))
    return json.loads(base64.b64decode(reply.split(" ", 1)[1]))  # type: ignore[no-any-return]


def test_ntlm_over_http_encrypts_and_values_arrive_unchanged(winrm_http: Standin) -> None:
    with WinRmTransport("win-01", winrm_http.spec()) as transport:
        assert transport.protocol.transport.encryption is not None  # sealed with the NTLM session key
        reply = echo(transport, TRICKY, env={"FERRY_TEST": TRICKY["subexpression"] + TRICKY["newlines"]},
                     data={"variables": {"Db.Password": TRICKY["quotes"]}})
    assert reply["values"] == TRICKY
    assert reply["env"] == {"FERRY_TEST": TRICKY["subexpression"] + TRICKY["newlines"]}
    assert reply["data"] == {"variables": {"Db.Password": TRICKY["quotes"]}}


def test_the_stdin_line_holds_no_value_as_source() -> None:
    line = bootstrap_line(request_payload("param($Values)", parameters={"Values": TRICKY}))
    assert line.isascii() and line.endswith("\r\n") and line.count("\n") == 1
    for value in TRICKY.values():
        for piece in value.split():
            if len(piece) > 3:
                assert piece not in line


def test_plain_soap_over_http_is_refused(winrm_http: Standin) -> None:
    # WinRM's default AllowUnencrypted=false: without NTLM sealing the server does not take the message
    url = f"http://{winrm_http.config.address}:{winrm_http.config.port}/wsman"
    reply = requests.post(url, data=b"<s:Envelope/>", auth=("deploy", "Passw0rd!"), timeout=10)
    assert reply.status_code == 401


def test_wrong_password_is_a_clear_refusal(winrm_http: Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_WINRM_PASSWORD", "not-the-password")
    with pytest.raises(TransportError) as refused:
        WinRmTransport("win-01", winrm_http.spec())
    assert refused.value.operation == "authenticate"
    assert str(refused.value) == (
        f"win-01: authenticate: http://{winrm_http.config.address}:"
        f"{winrm_http.config.port}/wsman refused the credentials of deploy (ntlm): wrong user name or password, "
        "or the account may not log on over WinRM")
    assert "not-the-password" not in str(refused.value)


def test_read_write_and_upload_skip_when_present(winrm_http: Standin, tmp_path: Path) -> None:
    package = tmp_path / "pkg.zip"
    package.write_bytes(os.urandom(1_300_000))  # several envelopes
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    with WinRmTransport("win-01", winrm_http.spec()) as transport:
        assert transport.max_envelope == 500 * 1024  # read from the server's WinRM config
        assert transport.read_file(".ferry/journal.json") is None
        transport.write_file(".ferry/journal.json", b'{"release": "1.0.0"}\n')
        assert transport.read_file(".ferry/journal.json") == b'{"release": "1.0.0"}\n'
        assert transport.upload(package, r"C:\ferry\packages\pkg.zip", digest) is True
        assert transport.upload(package, r"C:\ferry\packages\pkg.zip", digest) is False
    assert winrm_http.fs(r"C:\Users\deploy\.ferry\journal.json").read_bytes() == b'{"release": "1.0.0"}\n'
    assert winrm_http.fs(r"C:\ferry\packages\pkg.zip").read_bytes() == package.read_bytes()


def test_upload_of_bytes_that_are_not_the_release_leaves_nothing(winrm_http: Standin, tmp_path: Path) -> None:
    package = tmp_path / "pkg.bin"
    package.write_bytes(b"tampered" * 1000)
    with WinRmTransport("win-01", winrm_http.spec()) as transport, pytest.raises(SnapshotIntegrityError):
        transport.upload(package, r"C:\ferry\packages\wrong.bin", "0" * 64)
    folder = winrm_http.fs(r"C:\ferry\packages")
    assert not [p.name for p in folder.iterdir() if "wrong" in p.name]


def test_a_user_who_cannot_read_the_config_gets_the_safe_envelope(winrm_http: Standin,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("FERRY_TEST_WINRM_PASSWORD", "0perator!")
    package = tmp_path / "pkg.bin"
    package.write_bytes(os.urandom(400_000))
    with WinRmTransport("win-01", winrm_http.spec(username="operator")) as transport:
        assert transport.max_envelope == 153600
        assert transport.upload(package, r"C:\ferry\op\pkg.bin", hashlib.sha256(package.read_bytes()).hexdigest())
    assert winrm_http.fs(r"C:\ferry\op\pkg.bin").read_bytes() == package.read_bytes()


def test_unknown_scripts_are_refused_by_the_standin(winrm_http: Standin) -> None:
    lines: list[str] = []
    with WinRmTransport("win-01", winrm_http.spec()) as transport:
        result = transport.run("Get-Process | Stop-Process", on_line=lines.append)
    assert result.exit_code == 1
    assert "refuses to run this script: it is not one of ferry's shipped .ps1 files" in lines[-1]


def test_https_basic_against_the_given_ca(winrm_https: Standin, test_ca) -> None:  # type: ignore[no-untyped-def]
    spec = winrm_https.spec(auth="basic", ca_file=str(test_ca.cert_file))
    with WinRmTransport("win-02", spec) as transport:
        assert echo(transport, TRICKY)["values"] == TRICKY
        assert transport.notices == []


def test_https_ntlm_with_channel_binding(winrm_https: Standin, test_ca) -> None:  # type: ignore[no-untyped-def]
    with WinRmTransport("win-02", winrm_https.spec(auth="ntlm", ca_file=str(test_ca.cert_file))) as transport:
        assert echo(transport, ["a"])["values"] == ["a"]


def test_client_certificate_auth(winrm_https: Standin, test_ca) -> None:  # type: ignore[no-untyped-def]
    cert, key = test_ca.issue("deploy-cert", client=True)
    spec = winrm_https.spec(auth="certificate", username=None, password=None, cert_file=str(cert),
                            cert_key_file=str(key), ca_file=str(test_ca.cert_file))
    with WinRmTransport("win-02", spec) as transport:
        assert echo(transport, 42)["values"] == 42


def test_untrusted_certificate_is_refused(winrm_https: Standin) -> None:
    # no ca_file: the system's CA bundle does not know the test CA
    with pytest.raises(TransportError) as refused:
        WinRmTransport("win-02", winrm_https.spec(auth="basic"))
    message = str(refused.value)
    assert refused.value.operation == "connect"
    assert "TLS certificate of https://" in message and "is not trusted" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message and "ca_file" in message


def test_turning_verification_off_is_explicit_and_reported(winrm_https: Standin) -> None:
    with WinRmTransport("win-02", winrm_https.spec(auth="basic", verify=False)) as transport:
        assert echo(transport, "x")["values"] == "x"
        assert transport.notices and "verification is OFF" in transport.notices[0]


def test_read_timeout_must_exceed_operation_timeout(winrm_http: Standin) -> None:
    with pytest.raises(TransportError, match=r"read_timeout .* must exceed operation_timeout"):
        WinRmTransport("win-01", winrm_http.spec(operation_timeout=20, read_timeout=20))


def test_unreachable_port_is_retried_then_reported(winrm_http: Standin) -> None:
    spec = winrm_http.spec(port=1)
    with pytest.raises(TransportError, match=r"cannot connect to http://.*:1/wsman: connection refused \(tried 3"):
        WinRmTransport("win-01", spec)


def test_clixml_error_stream_becomes_text() -> None:
    # captured from Windows PowerShell by pywinrm's test suite
    raw = (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
           b'<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
           b'<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for '
           b'first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR>'
           b'</MS></Obj><S S="Error">fake : The term \'fake\' is not recognized as the name of a cmdlet, '
           b'function, script file, or operable program. Check _x000D__x000A_</S><S S="Error">the spelling of '
           b'the name, or if a path was included, verify that the path is correct and try again._x000D__x000A_'
           b'</S><S S="Error">At line:1 char:1_x000D__x000A_</S><S S="Error">+ fake cmdlet_x000D__x000A_</S>'
           b'</Objs>')
    assert decode_clixml(raw) == (
        "fake : The term 'fake' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check \nthe spelling of the name, or if a path was included, verify that the path is correct "
        "and try again.\nAt line:1 char:1\n+ fake cmdlet")
    assert decode_clixml(b"plain error\n") == "plain error\n"

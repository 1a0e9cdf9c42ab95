"""The SSH transport against real sshd processes of the lab (no mocks): values as data, streaming, exit codes,
timeouts, host-key pinning, authentication failures, verified uploads that skip what is already there."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.errors import SnapshotIntegrityError, TransportError
from snapshots.model.common import FromEnv
from snapshots.variables.masking import Masker
from steps.transports.ssh import KnownHosts, SshTransport, fingerprint, parse_host_key, scan_host_key
from tests.servers.ssh_lab import LabInfo

TRICKY = {
    "QUOTES": "it's \"quoted\" 'twice'",
    "SUBST": "$(touch /tmp/ferry-pwned-subst) ${HOME} $HOME",
    "TICKS": "`touch /tmp/ferry-pwned-ticks`",
    "LINES": "first line\nsecond line\n\n  indented; exit 99\n",
    "UNICODE": "Zürich → 東京 ✓",
    "SEMI": "'; touch /tmp/ferry-pwned-semi; echo '",
    "EMPTY": "",
}



def _lines(transport: SshTransport, script: str, **kwargs: object) -> tuple[int, list[str]]:
    lines: list[str] = []
    result = transport.run(script, on_line=lines.append, **kwargs)  # type: ignore[arg-type]
    return result.exit_code, lines


# -- run ---------------------------------------------------------------------------------------------------------

def test_env_and_data_arrive_byte_for_byte(dev: SshTransport) -> None:
    data = {"variables": TRICKY, "nested": {"list": [1, 2.5, None, True], "key with spaces": "$(x)"}}
    script = """
set -eu
for name in QUOTES SUBST TICKS LINES UNICODE SEMI EMPTY; do
  printf '%s=' "$name"; printf '%s' "${!name}" | base64 -w0; echo
done
echo "DATA=$(base64 -w0 < "$FERRY_DATA")"
"""
    code, lines = _lines(dev, script, env=TRICKY, data=data)
    assert code == 0, lines
    import base64

    seen = dict(line.split("=", 1) for line in lines)
    for name, value in TRICKY.items():
        assert base64.b64decode(seen[name]).decode() == value, name
    assert json.loads(base64.b64decode(seen["DATA"])) == data
    code, lines = _lines(dev, "ls /tmp/ferry-pwned-* 2>/dev/null | wc -l")
    assert lines == ["0"], "a value was executed as code"


def test_script_source_is_sent_as_written(dev: SshTransport) -> None:
    script = "cat <<'EOF'\n$(not run) `not run` ${NOT_EXPANDED}\nEOF\necho \"tab\there\""
    code, lines = _lines(dev, script)
    assert (code, lines) == (0, ["$(not run) `not run` ${NOT_EXPANDED}", "tab\there"])


def test_exit_codes_and_merged_output_in_order(dev: SshTransport) -> None:
    result = dev.run("echo out1; echo err1 >&2; echo out2; exit 7")
    assert result.exit_code == 7 and not result.ok
    assert result.output_tail == ["out1", "err1", "out2"]
    assert dev.run("true").exit_code == 0
    assert dev.run("kill -9 $$").exit_code != 0


def test_cwd_and_temp_files_are_cleaned_up(dev: SshTransport) -> None:
    code, lines = _lines(dev, 'pwd; echo "$FERRY_DATA"', cwd="/srv", data={"a": 1})
    assert code == 0 and lines[0] == "/srv"
    data_file = lines[1]
    code, lines = _lines(dev, f"test -e {data_file} && echo still-there || echo gone")
    assert lines == ["gone"]
    code, lines = _lines(dev, "echo unreachable", cwd="/nonexistent-dir")
    assert code == 1 and any("nonexistent-dir" in line for line in lines)


def test_output_streams_line_by_line(dev: SshTransport) -> None:
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    result = dev.run("echo first; sleep 1.5; echo second",
                     on_line=lambda line: arrivals.append((time.monotonic() - start, line)))
    total = time.monotonic() - start
    assert result.ok and [line for _, line in arrivals] == ["first", "second"]
    assert arrivals[0][0] < total - 1.0, "the first line only arrived when the script ended"


def test_output_is_masked(dev: SshTransport, lab: LabInfo) -> None:
    secret = "hunter2-super-secret"
    masked = SshTransport("dev-01", lab.spec("dev-01"), known_hosts=lab.known_hosts, masker=Masker([secret]))
    try:
        lines: list[str] = []
        result = masked.run('echo "password=$P"', env={"P": secret}, on_line=lines.append)
    finally:
        masked.close()
    assert lines == ["password=********"] and result.output_tail == lines


def test_one_connection_for_everything(dev: SshTransport, tmp_path: Path) -> None:
    first = dev.run('echo "$SSH_CLIENT"').output_tail
    file = tmp_path / "f.txt"
    file.write_text("x")
    dev.upload(file, "/tmp/ferry-test-reuse/f.txt", hashlib.sha256(b"x").hexdigest())
    second = dev.run('echo "$SSH_CLIENT"').output_tail
    assert first == second  # same client port: the same TCP connection
    dev.run("rm -rf /tmp/ferry-test-reuse")


def test_invalid_env_name_is_refused(dev: SshTransport) -> None:
    with pytest.raises(TransportError, match="invalid environment variable name"):
        dev.run("true", env={"BAD-NAME": "x"})


@pytest.mark.slow
def test_timeout_kills_the_remote_process_group(dev: SshTransport) -> None:
    script = "sleep 300 & echo $! > /tmp/ferry-timeout-child; echo $$ > /tmp/ferry-timeout-main; sleep 300"
    start = time.monotonic()
    with pytest.raises(TransportError, match=r"timed out after 1s; killed the remote process group") as failure:
        dev.run(script, timeout=1)
    assert time.monotonic() - start < 8
    assert failure.value.target == "dev-01" and failure.value.operation == "run"
    _, lines = _lines(dev, """
for f in /tmp/ferry-timeout-child /tmp/ferry-timeout-main; do
  if kill -0 "$(cat $f)" 2>/dev/null; then echo alive; else echo dead; fi
done
rm -f /tmp/ferry-timeout-child /tmp/ferry-timeout-main""")
    assert lines == ["dead", "dead"]
    assert dev.run("echo still usable").output_tail == ["still usable"]


# -- host keys ---------------------------------------------------------------------------------------------------

def test_unknown_host_key_is_refused_with_its_fingerprint(lab: LabInfo, tmp_path: Path) -> None:
    spec = lab.spec("test-01", host_key=None)
    presented = lab.info("test-01")["fingerprint"]
    with pytest.raises(TransportError) as failure:
        SshTransport("test-01", spec, known_hosts=tmp_path / "empty_known_hosts")
    message = str(failure.value)
    assert message.startswith("test-01: connect: unknown host key")
    assert presented in message and "expected: none pinned" in message and "ferry target trust test-01" in message


def test_changed_pinned_host_key_is_refused_with_both_fingerprints(lab: LabInfo) -> None:
    other = lab.info("test-02")
    spec = lab.spec("test-01", host_key=other["host_key"])  # test-01 now "should" present test-02's key
    with pytest.raises(TransportError) as failure:
        SshTransport("test-01", spec, known_hosts=lab.known_hosts)
    message = str(failure.value)
    assert "host key changed" in message and "test-01" in message
    assert f"expected {other['fingerprint']}" in message
    assert f"presented {lab.info('test-01')['fingerprint']}" in message


def test_changed_recorded_host_key_is_refused(lab: LabInfo, tmp_path: Path) -> None:
    target = lab.info("test-01")
    known = KnownHosts(tmp_path / "known_hosts")
    known.add(target["address"], target["ssh_port"], parse_host_key(lab.info("prod-01")["host_key"]))
    with pytest.raises(TransportError, match="host key changed") as failure:
        SshTransport("test-01", lab.spec("test-01", host_key=None), known_hosts=known)
    assert lab.info("prod-01")["fingerprint"] in str(failure.value)
    assert target["fingerprint"] in str(failure.value)
    # After a person re-trusts it, the same connection works.
    known.add(target["address"], target["ssh_port"], scan_host_key(target["address"], target["ssh_port"]))
    with SshTransport("test-01", lab.spec("test-01", host_key=None), known_hosts=known) as transport:
        assert transport.run("true").ok
    assert len(known.lookup(target["address"], target["ssh_port"])) == 1
    assert (tmp_path / "known_hosts").read_text().startswith(f"[{target['address']}]:{target['ssh_port']} ")


def test_known_hosts_entry_is_usable_by_openssh(lab: LabInfo) -> None:
    target = lab.info("dev-01")
    result = subprocess.run(
        ["ssh", "-i", str(lab.key_file), "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-p", str(target["ssh_port"]), f"ferry@{target['address']}",
         "echo $FERRY_LAB_TARGET"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev-01"


def test_scanned_fingerprint_matches_ssh_keygen(lab: LabInfo) -> None:
    target = lab.info("prod-02")
    key = scan_host_key(target["address"], target["ssh_port"])
    pub = lab.lab.target_dir("prod-02") / "ssh_host_ed25519_key.pub"
    keygen = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    assert fingerprint(key) == keygen.stdout.split()[1] == target["fingerprint"]


# -- connect and authenticate --------------------------------------------------------------------------------------

def test_closed_port_fails_fast_and_clearly(lab: LabInfo) -> None:
    spec = lab.spec("dev-01", port=2)
    start = time.monotonic()
    with pytest.raises(TransportError) as failure:
        SshTransport("dev-01", spec, known_hosts=lab.known_hosts)
    assert time.monotonic() - start < 2
    assert str(failure.value) == f"dev-01: connect: cannot connect to {spec.host}:2: connection refused"


def test_silent_server_times_out(lab: LabInfo) -> None:
    with socket.socket() as listener:  # accepts TCP but never speaks SSH
        listener.bind((lab.info("dev-01")["address"], 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TransportError, match=r"SSH handshake .* failed"):
            SshTransport("dev-01", lab.spec("dev-01", port=port, connect_timeout=1), known_hosts=lab.known_hosts)
        assert time.monotonic() - start < 5


def test_wrong_key_is_refused(lab: LabInfo, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(TransportError) as failure:
        SshTransport("dev-01", lab.spec("dev-01", key_file=str(stranger)), known_hosts=lab.known_hosts)
    assert str(failure.value) == f"dev-01: authenticate: authentication as ferry refused (tried key file {stranger})"


def test_missing_key_file_is_named(lab: LabInfo, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"key file .*nope does not exist"):
        SshTransport("dev-01", lab.spec("dev-01", key_file=str(tmp_path / "nope")), known_hosts=lab.known_hosts)


def test_wrong_password_is_refused(lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("LAB_PASSWORD", "not-the-password")
    spec = lab.spec("dev-01", key_file=None, password=FromEnv(from_env="LAB_PASSWORD"))
    with pytest.raises(TransportError) as failure:
        SshTransport("dev-01", spec, known_hosts=lab.known_hosts)
    assert str(failure.value) == "dev-01: authenticate: authentication as ferry refused (tried password)"
    monkeypatch.delenv("LAB_PASSWORD")
    with pytest.raises(TransportError, match="environment variable LAB_PASSWORD is not set"):
        SshTransport("dev-01", spec, known_hosts=lab.known_hosts)


@pytest.fixture
def password_user() -> Iterator[tuple[str, str]]:
    """A throwaway login with a password (the lab's own user has none)."""
    if os.geteuid() != 0:
        pytest.fail("the SSH password test needs root (it creates a user); run the tests as root like .ci/run")
    user, password = "ferry-pwtest", "correct horse battery staple"
    subprocess.run(["useradd", "--system", "--shell", "/bin/bash", "--create-home", "--home-dir",
                    f"/var/lib/{user}", user], capture_output=True, check=False)
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
    try:
        yield user, password
    finally:
        subprocess.run(["userdel", "--force", "--remove", user], capture_output=True, check=False)


def test_password_from_a_secret_reference(lab: LabInfo, password_user: tuple[str, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    user, password = password_user
    secret_file = tmp_path / "pw"
    secret_file.write_text(password + "\n")
    from snapshots.model.common import FromFile

    spec = lab.spec("dev-01", user=user, key_file=None, password=FromFile(from_file=str(secret_file)))
    with SshTransport("dev-01", spec, known_hosts=lab.known_hosts) as transport:
        assert transport.run("id -un").output_tail == [user]


def test_agent_auth(lab: LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(lab.key_file)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SshTransport("dev-01", lab.spec("dev-01", key_file=None), known_hosts=lab.known_hosts) as transport:
            assert transport.run("id -un").output_tail == ["ferry"]
    finally:
        agent.terminate()
        agent.wait(10)


# -- upload ------------------------------------------------------------------------------------------------------

def _stat(transport: SshTransport, path: str) -> str:
    return transport.run(f"stat -c '%i %Y %y %s' {path}").output_tail[0]


def test_upload_then_skip_when_the_sha256_is_already_there(dev: SshTransport, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several SFTP writes and a ragged end
    local = tmp_path / "OctoFX.Web.1.0.0.tar.gz"
    local.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    remote = "/srv/ferry-upload-test/packages/OctoFX.Web.1.0.0.tar.gz"
    dev.run("rm -rf /srv/ferry-upload-test")
    assert dev.upload(local, remote, digest) is True
    assert dev.remote_sha256(remote) == digest
    before = _stat(dev, remote)
    time.sleep(1.1)  # so a rewrite would show in the mtime, not only in the inode
    assert dev.upload(local, remote, digest) is False
    assert _stat(dev, remote) == before, "the file was rewritten although the target already had it"
    # No temp files left behind, and different bytes under the same name replace it atomically (new inode).
    local.write_bytes(payload[::-1])
    assert dev.upload(local, remote, hashlib.sha256(payload[::-1]).hexdigest()) is True
    assert _stat(dev, remote).split()[0] != before.split()[0]
    assert dev.run("ls -A /srv/ferry-upload-test/packages").output_tail == ["OctoFX.Web.1.0.0.tar.gz"]
    dev.run("rm -rf /srv/ferry-upload-test")


def test_upload_refuses_bytes_that_do_not_match_the_release(dev: SshTransport, tmp_path: Path) -> None:
    local = tmp_path / "pkg.tar.gz"
    local.write_bytes(b"tampered")
    with pytest.raises(SnapshotIntegrityError, match=r"expected 0{64}"):
        dev.upload(local, "/srv/ferry-tamper/pkg.tar.gz", "0" * 64)
    assert dev.run("ls -A /srv/ferry-tamper").output_tail == []
    dev.run("rm -rf /srv/ferry-tamper")


def test_upload_of_an_empty_file_and_into_a_path_with_spaces(dev: SshTransport, tmp_path: Path) -> None:
    local = tmp_path / "empty"
    local.write_bytes(b"")
    remote = "/srv/ferry odd dir/$(x) 'q'.txt"
    assert dev.upload(local, remote, hashlib.sha256(b"").hexdigest()) is True
    assert dev.run('ls -A "/srv/ferry odd dir"').output_tail == ["$(x) 'q'.txt"]
    dev.run('rm -rf "/srv/ferry odd dir"')


def test_targets_have_private_app_roots(lab: LabInfo) -> None:
    """Every lab target is its own machine as far as /srv goes (the sample's App.Root is /srv/octofx)."""
    with SshTransport("test-01", lab.spec("test-01"), known_hosts=lab.known_hosts) as one, \
            SshTransport("test-02", lab.spec("test-02"), known_hosts=lab.known_hosts) as two:
        assert one.run("mkdir -p /srv/octofx && echo test-01 > /srv/octofx/who").ok
        assert two.run("cat /srv/octofx/who 2>/dev/null || echo nothing").output_tail == ["nothing"]
        assert one.run("cat /srv/octofx/who; rm -rf /srv/octofx").output_tail == ["test-01"]
    assert shutil.which("ssh")


def test_background_process_holding_the_output_does_not_hang_the_run(dev: SshTransport) -> None:
    start = time.monotonic()
    result = dev.run("sleep 60 & echo started $!")  # the daemon inherits stdout: OpenSSH's ssh would hang
    assert time.monotonic() - start < 5
    assert result.ok and result.output_tail[0].startswith("started ")
    pid = result.output_tail[0].split()[1]
    assert dev.run(f"kill {pid} && echo stopped").output_tail == ["stopped"]


@pytest.fixture
def two_key_sshd(lab: LabInfo, tmp_path: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    """An sshd offering an ed25519 *and* an RSA host key, like most real servers (auth is beside the point)."""
    keys = {}
    for kind in ("ed25519", "rsa"):
        path = tmp_path / f"host_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        keys[kind] = " ".join((tmp_path / f"host_{kind}.pub").read_text().split()[:2])
    address = lab.info("dev-01")["address"]
    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    config = tmp_path / "sshd_config"
    config.write_text(f"ListenAddress {address}:{port}\nHostKey {tmp_path / 'host_ed25519'}\n"
                      f"HostKey {tmp_path / 'host_rsa'}\nPidFile {tmp_path / 'pid'}\nUsePAM no\n")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex((address, port)) == 0:
                    break
            time.sleep(0.05)
        yield address, port, keys
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_the_pinned_key_type_is_negotiated(lab: LabInfo, two_key_sshd: tuple[str, int, dict[str, str]],
                                           kind: str, tmp_path: Path) -> None:
    address, port, keys = two_key_sshd
    spec = lab.spec("dev-01", host=address, port=port, host_key=keys[kind])
    # The host key matched (whichever type was pinned): what fails is only the login, which this sshd refuses.
    with pytest.raises(TransportError, match="authentication as ferry refused"):
        SshTransport("dev-01", spec, known_hosts=tmp_path / "none")
    other = keys["rsa" if kind == "ed25519" else "ed25519"]
    known = KnownHosts(tmp_path / "known_hosts")
    known.add(address, port, parse_host_key(keys[kind]))
    with pytest.raises(TransportError, match="authentication as ferry refused"):
        SshTransport("dev-01", spec.model_copy(update={"host_key": None}), known_hosts=known)
    assert fingerprint(parse_host_key(other)) != fingerprint(parse_host_key(keys[kind]))


def test_read_and_write_small_files_over_sftp(dev: SshTransport, lab: LabInfo) -> None:
    name = f".ferry-test-{os.getpid()}/sub/state.json"
    try:
        assert dev.read_file(name) is None
        dev.write_file(name, b'{"a": 1}')  # relative: the login home, folders created
        assert dev.read_file(name) == b'{"a": 1}'
        code, lines = _lines(dev, f'cd && stat -c %a {name} && chmod 600 {name}')
        assert code == 0
        dev.write_file(name, b"second")
        assert dev.read_file(name) == b"second"
        code, lines = _lines(dev, f'cd && stat -c %a {name} && ls -A "$(dirname {name})"')
        assert lines == ["600", "state.json"]  # mode kept, no temp file left behind
        home = lab.lab.user_home("dev-01")
        assert (home / name).read_bytes() == b"second"  # each target's home is its own
        assert not (lab.lab.user_home("test-01") / name).exists()
        dev.run(f"cd && rm -rf .ferry-test-{os.getpid()}/sub")  # the folder goes behind the connection's back
        dev.write_file(name, b"third")  # the connection wrote there before: it finds out, and creates it again
        assert dev.read_file(name) == b"third"
    finally:
        dev.run(f"cd && rm -rf .ferry-test-{os.getpid()}")


def test_scripts_get_ferry_var_over_ssh(dev: SshTransport) -> None:
    code, lines = _lines(dev, 'echo "[$(ferry_var Greeting)]"; false | true; echo "line $LINENO"',
                         data={"variables": {"Greeting": "it's $(x)"}})
    assert (code, lines) == (0, ["[it's $(x)]", "line 1"])  # the preamble keeps the script's line numbers


def test_channel_opens_are_not_held_back_by_nagle(dev: SshTransport) -> None:
    """TCP_NODELAY, as OpenSSH sets it: with Nagle on, each channel open (every script run, every internal
    command) waited for the server's delayed ACK, ~40 ms each, several times per step."""
    assert dev.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        assert dev._exec("true")[0] == 0
        times.append(time.perf_counter() - start)
    assert sorted(times)[len(times) // 2] < 0.035, times

"""The proxystore-endpoint command line, run as real processes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from proxystore.endpoint.cli import main
from proxystore.endpoint.config import read_config
from proxystore.endpoint.process import command_line, is_alive, start_time
from proxystore.endpoint.testing import (
    EndpointProcess,
    configure_endpoint,
    run_cli,
    start_signaling_server,
    wait_for_port,
)

pytestmark = pytest.mark.timeout(60)


def _describe(site: EndpointProcess) -> dict[str, object]:
    request = urllib.request.Request(f"{site.url}/endpoint", headers=site.auth_headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        data: dict[str, object] = json.loads(response.read())
    return data


def test_configure_list_start_stop_remove_round_trip(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "site-a", "--max-memory", "1M")
    config_file = tmp_path / "endpoints" / "site-a" / "endpoint.json"
    assert json.loads(config_file.read_text())["max_memory"] == 1024 * 1024

    listed = run_cli(tmp_path, "list")
    assert listed.returncode == 0
    assert "site-a" in listed.stdout
    assert site.uuid in listed.stdout
    assert f"127.0.0.1:{site.config.port}" in listed.stdout
    assert "stopped" in listed.stdout

    site.start()
    try:
        assert _describe(site)["uuid"] == site.uuid
        listed = run_cli(tmp_path, "list")
        assert f"running (pid {site.process.pid})" in listed.stdout  # type: ignore[union-attr]

        again = run_cli(tmp_path, "start", "site-a")
        assert again.returncode == 1
        assert "already running" in again.stderr

        busy = run_cli(tmp_path, "remove", "site-a")
        assert busy.returncode == 1
        assert "stop it first" in busy.stderr

        stopped = run_cli(tmp_path, "stop", "site-a")
        assert stopped.returncode == 0, stopped.stderr
        assert site.process is not None
        assert site.process.wait(10) == 0
    finally:
        site.stop()
    assert not (tmp_path / "endpoints" / "site-a" / "endpoint.pid").exists()
    log = (tmp_path / "endpoints" / "site-a" / "endpoint.log").read_text()
    assert "listening on" in log

    assert run_cli(tmp_path, "stop", "site-a").stdout.strip() == (
        "endpoint site-a is not running"
    )
    removed = run_cli(tmp_path, "remove", "site-a")
    assert removed.returncode == 0
    assert not (tmp_path / "endpoints" / "site-a").exists()
    assert "no endpoints configured" in run_cli(tmp_path, "list").stdout


def test_uuid_persists_across_restarts(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "site-b")
    for _ in range(2):
        site.start()
        try:
            assert _describe(site)["uuid"] == site.uuid
        finally:
            site.stop()


def test_detach_then_stop(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "bg")
    started = run_cli(tmp_path, "start", "bg", "--detach", "--timeout", "30")
    assert started.returncode == 0, started.stderr
    record = json.loads((tmp_path / "endpoints" / "bg" / "endpoint.pid").read_text())
    pid = record["pid"]
    assert record["start_time"] == start_time(pid)
    assert record["command"] == command_line(pid)
    try:
        wait_for_port(site.config.host, site.config.port, 10)
        assert _describe(site)["name"] == "bg"
    finally:
        stopped = run_cli(tmp_path, "stop", "bg", "--timeout", "10")
    assert stopped.returncode == 0, stopped.stderr
    assert not is_alive(pid)


def test_errors_are_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROXYSTORE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["configure", "dup", "--port", "0", "--spill-dir", "spill"]) == 0
    assert read_config("dup").spill_dir == str(tmp_path / "spill")
    assert main(["configure", "dup"]) == 1
    assert "already configured" in capsys.readouterr().err
    assert main(["start", "ghost"]) == 1
    assert "no endpoint named 'ghost'" in capsys.readouterr().err
    assert main(["configure", "../evil"]) == 1
    assert "invalid endpoint name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["configure", "x", "--max-memory", "lots"])
    assert "not a byte size" in capsys.readouterr().err


def test_start_on_a_taken_port_fails_cleanly(tmp_path: Path) -> None:
    first = configure_endpoint(tmp_path / "a", "first")
    second = configure_endpoint(
        tmp_path / "b", "second", "--port", str(first.config.port)
    )
    first.start()
    try:
        result = run_cli(second.home, "start", "second")
        assert result.returncode == 1
        assert "could not start" in result.stderr
        assert not (second.home / "endpoints" / "second" / "endpoint.pid").exists()
    finally:
        first.stop()


def test_configure_creates_an_identity_matching_the_uuid(tmp_path: Path) -> None:
    from proxystore.endpoint.identity import read_identity

    site = configure_endpoint(
        tmp_path, "ident", "--server", "ws://127.0.0.1:1", secret="s3cret"
    )
    directory = tmp_path / "endpoints" / "ident"
    assert (directory / "identity.pem").stat().st_mode & 0o777 == 0o600
    assert read_identity(directory).uuid == site.uuid
    assert (directory / "endpoint.json").stat().st_mode & 0o777 == 0o600
    assert site.config.secret == "s3cret"


def test_secret_on_the_command_line_is_refused(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path, "configure", "x", "--server", "ws://127.0.0.1:1", "--secret", "s"
    )
    assert result.returncode == 1
    assert "--secret-file" in result.stderr
    assert not (tmp_path / "endpoints" / "x" / "endpoint.json").exists()
    missing = run_cli(
        tmp_path,
        "configure",
        "y",
        "--server",
        "ws://127.0.0.1:1",
        env={"PROXYSTORE_SIGNALING_SECRET": ""},
    )
    assert missing.returncode == 1
    assert "PROXYSTORE_SIGNALING_SECRET" in missing.stderr
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    secret_file.chmod(0o644)
    too_open = run_cli(
        tmp_path, "configure", "z", "--server", "ws://127.0.0.1:1",
        "--secret-file", str(secret_file),
    )  # fmt: skip
    assert too_open.returncode == 1
    assert "chmod 600" in too_open.stderr
    secret_file.chmod(0o600)
    site = configure_endpoint(
        tmp_path, "z", "--server", "ws://127.0.0.1:1", "--secret-file", str(secret_file)
    )
    assert site.config.secret == "from-a-file"


def test_peers_add_remove_list(tmp_path: Path) -> None:
    configure_endpoint(tmp_path, "site")
    assert "peers with no endpoint" in run_cli(tmp_path, "peers", "list", "site").stdout
    a, b = (str(uuid.uuid4()) for _ in range(2))
    added = run_cli(tmp_path, "peers", "add", "site", a, b.upper(), a)
    assert added.returncode == 0, added.stderr
    assert run_cli(tmp_path, "peers", "list", "site").stdout.split() == [a, b]
    assert run_cli(tmp_path, "peers", "remove", "site", a).returncode == 0
    assert run_cli(tmp_path, "peers", "list", "site").stdout.split() == [b]
    bad = run_cli(tmp_path, "peers", "add", "site", "not-a-uuid")
    assert bad.returncode == 1
    assert "not an endpoint uuid" in bad.stderr
    ghost = run_cli(tmp_path, "peers", "list", "ghost")
    assert ghost.returncode == 1


def test_start_refuses_a_uuid_its_key_does_not_prove(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "liar")
    config_file = tmp_path / "endpoints" / "liar" / "endpoint.json"
    data = json.loads(config_file.read_text())
    data["uuid"] = str(uuid.uuid4())
    config_file.write_text(json.dumps(data))
    result = run_cli(tmp_path, "start", "liar", timeout=30)
    assert result.returncode == 1
    assert "does not match its identity key" in result.stderr
    assert site.process is None


def test_start_refuses_a_peering_endpoint_without_identity(tmp_path: Path) -> None:
    configure_endpoint(tmp_path, "old", "--server", "ws://127.0.0.1:1", secret="s")
    (tmp_path / "endpoints" / "old" / "identity.pem").unlink()
    result = run_cli(tmp_path, "start", "old", timeout=30)
    assert result.returncode == 1
    assert "must be configured again" in result.stderr


def test_version_help_and_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    import proxystore

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert (
        capsys.readouterr().out.strip()
        == f"proxystore-endpoint {proxystore.__version__}"
    )

    assert main([]) == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: proxystore-endpoint")
    assert "configure" in usage
    assert "help" in usage

    assert main(["help"]) == 0
    assert capsys.readouterr().out == usage

    assert main(["help", "start"]) == 0
    assert "usage: proxystore-endpoint start" in capsys.readouterr().out

    assert main(["help", "nope"]) == 1
    assert "no command 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("recorded", ["bare-pid", "reused-pid"])
def test_stop_never_signals_a_process_a_stale_pid_file_names(
    tmp_path: Path, recorded: str
) -> None:
    configure_endpoint(tmp_path, "old")
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pid_path = tmp_path / "endpoints" / "old" / "endpoint.pid"
        if recorded == "bare-pid":
            pid_path.write_text(f"{bystander.pid}\n")
        else:
            # What the endpoint wrote before it died and the pid was reused.
            started = start_time(bystander.pid)
            assert started is not None
            pid_path.write_text(
                json.dumps(
                    {
                        "pid": bystander.pid,
                        "start_time": started - 1,
                        "command": ["python", "-m", "proxystore.endpoint.cli"],
                    }
                )
            )
        stopped = run_cli(tmp_path, "stop", "old")
        assert stopped.returncode == 1
        assert "refusing to signal" in stopped.stderr
        assert str(bystander.pid) in stopped.stderr
        assert bystander.poll() is None
        assert is_alive(bystander.pid)
        assert not pid_path.exists()
        listed = run_cli(tmp_path, "list")
        assert "stopped" in listed.stdout
    finally:
        bystander.kill()
        bystander.wait(10)


def test_list_reports_and_removes_a_pid_file_of_a_dead_process(
    tmp_path: Path,
) -> None:
    configure_endpoint(tmp_path, "gone")
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    pid_path = tmp_path / "endpoints" / "gone" / "endpoint.pid"
    pid_path.write_text(json.dumps({"pid": dead.pid, "start_time": 1, "command": []}))
    listed = run_cli(tmp_path, "list")
    assert listed.returncode == 0
    assert "stopped" in listed.stdout
    assert "stale pid file" in listed.stderr
    assert not pid_path.exists()


def test_detach_fails_when_the_signaling_server_refuses_the_secret(
    tmp_path: Path,
) -> None:
    server = start_signaling_server("the-real-secret-" + "s" * 16)
    try:
        configure_endpoint(
            tmp_path,
            "wrong",
            "--server",
            server.url,
            secret="a-wrong-secret-" + "w" * 16,
        )
        started = run_cli(tmp_path, "start", "wrong", "--detach", "--timeout", "30")
        assert started.returncode == 1
        assert "refused" in started.stderr
        assert "secret" in started.stderr
        # Nothing left running or claiming to run.
        assert not (tmp_path / "endpoints" / "wrong" / "endpoint.pid").exists()
        assert "stopped" in run_cli(tmp_path, "list").stdout
    finally:
        server.stop()


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], result.stderr


def test_configure_refuses_an_address_not_on_this_host(tmp_path: Path) -> None:
    # TEST-NET-3: never assigned to a host.
    result = run_cli(tmp_path, "configure", "x", "--host", "203.0.113.7")
    _one_line_error(result, "--host '203.0.113.7'", "not an address of this host")
    assert not (tmp_path / "endpoints" / "x" / "endpoint.json").exists()


def test_start_refuses_an_unknown_log_level(tmp_path: Path) -> None:
    configure_endpoint(tmp_path, "lvl")
    result = run_cli(tmp_path, "start", "lvl", "--log-level", "FOO")
    _one_line_error(result, "unknown log level 'FOO'")


def test_start_on_a_taken_port_says_bind_failed(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        configure_endpoint(tmp_path, "taken", "--port", str(port))
        result = run_cli(tmp_path, "start", "taken")
        detached = run_cli(tmp_path, "start", "taken", "--detach")
    _one_line_error(result, f"127.0.0.1:{port}", "bind failed")
    assert "reach" not in result.stderr
    assert detached.returncode == 1
    assert "bind failed" in detached.stderr


def test_signaling_server_logs_with_timestamps_to_its_log_file(
    tmp_path: Path,
) -> None:
    log = tmp_path / "signaling.log"
    server = start_signaling_server("s" * 32, log_file=log)
    try:
        wait_for_port(server.host, server.port, 30)
    finally:
        server.stop()
    first = log.read_text().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ", first), first


def _put(site: EndpointProcess, key: str, data: bytes) -> None:
    request = urllib.request.Request(
        f"{site.url}/objects/{key}", data=data, method="PUT", headers=site.auth_headers
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204


def test_status_of_a_running_endpoint(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "live", "--max-memory", "1M")
    site.start()
    try:
        result = run_cli(tmp_path, "status", "live", "--json")
        assert result.returncode == 0, result.stderr
        before = json.loads(result.stdout)
        assert before["name"] == "live"
        assert before["pid"] == site.pid
        assert before["uptime"] >= 0
        assert before["storage"]["objects"] == 0
        assert before["storage"]["max_memory"] == 1024 * 1024
        assert before["signaling_state"] == "off"
        assert before["peers"] == {}
        assert before["requests_in_flight"] == 0
        assert before["waiting"] == 0

        _put(site, "a" * 16, b"x" * 1000)
        after = json.loads(run_cli(tmp_path, "status", "live", "--json").stdout)
        assert after["storage"]["objects"] == 1
        assert after["storage"]["memory_bytes"] == 1000

        text = run_cli(tmp_path, "status", "live")
        assert text.returncode == 0, text.stderr
        assert f"endpoint live ({site.uuid}) running, pid {site.pid}" in text.stdout
        assert "objects    1" in text.stdout
        assert "1000 B of 1.0 MiB" in text.stdout
        assert "signaling  off" in text.stdout
        assert "peers      0 connected" in text.stdout
    finally:
        site.stop()


def test_status_errors_are_one_line_with_an_exit_code(tmp_path: Path) -> None:
    import os
    import signal

    unknown = run_cli(tmp_path, "status", "ghost")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1
    assert "no endpoint named" in unknown.stderr

    site = configure_endpoint(tmp_path, "st")
    stopped = run_cli(tmp_path, "status", "st", "--json")
    assert (stopped.returncode, stopped.stdout) == (3, "")
    assert stopped.stderr == "endpoint st is not running\n"

    # A pid file naming a process that is not the endpoint is stale.
    pid_path = tmp_path / "endpoints" / "st" / "endpoint.pid"
    pid_path.write_text(json.dumps({"pid": 1, "start_time": 0, "command": ["x"]}))
    stale = run_cli(tmp_path, "status", "st")
    assert stale.returncode == 3
    assert stale.stderr.count("\n") == 1
    assert "removed a stale pid file" in stale.stderr
    assert not pid_path.exists()

    site.start()
    try:
        assert site.pid is not None
        os.kill(site.pid, signal.SIGSTOP)
        try:
            silent = run_cli(tmp_path, "status", "st", "--timeout", "0.5")
        finally:
            os.kill(site.pid, signal.SIGCONT)
        assert silent.returncode == 4
        assert silent.stderr.count("\n") == 1
        assert "did not answer" in silent.stderr

        assert run_cli(tmp_path, "rotate-token", "st").returncode == 0
        refused = run_cli(tmp_path, "status", "st")
        assert refused.returncode == 5
        assert refused.stderr.count("\n") == 1
        assert "refused the API token" in refused.stderr
    finally:
        site.stop()


def test_status_of_peering_endpoints(tmp_path: Path) -> None:
    from proxystore.endpoint.testing import wait_until_registered

    secret = "status-test-secret-" + "s" * 16
    server = start_signaling_server(secret)
    sites: list[EndpointProcess] = []
    try:
        for name in ("pa", "pb"):
            sites.append(
                configure_endpoint(
                    tmp_path / name, name, "--server", server.url, secret=secret
                )
            )
        a, b = sites
        a.allow(b.uuid)
        b.allow(a.uuid)
        for site in sites:
            site.start()
            wait_until_registered(site, 30)
        _put(a, "b" * 16 + f"?endpoint={b.uuid}", b"y" * 100)
        result = run_cli(a.home, "status", "pa", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["signaling_state"] == "connected"
        assert data["signaling_error"] is None
        assert set(data["fast_path"]) == {
            "pending_offers",
            "pending_channel_offers",
            "served",
            "refused",
        }
        stats = data["peers"][b.uuid]
        sent = stats["requests_over_channel"] + stats["requests_over_data_channel"]
        assert sent == 1
        remote = json.loads(run_cli(b.home, "status", "pb", "--json").stdout)
        assert remote["storage"]["objects"] == 1
        text = run_cli(a.home, "status", "pa").stdout
        assert f"signaling  connected ({server.url})" in text
        assert "peers      1 connected" in text
        assert b.uuid in text
    finally:
        for site in sites:
            site.stop()
        server.stop()


def test_help_lists_status(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "help")
    assert "status" in result.stdout
    topic = run_cli(tmp_path, "help", "status")
    assert topic.returncode == 0
    assert "3 not running" in topic.stdout

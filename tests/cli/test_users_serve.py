"""`hearth users` (accounts, first steward only by the owner, one-time passwords, tokens) and `hearth serve`."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.cli.main import app
from hearthkit.governance import identity
from hearthkit.workspace import open_workspace

runner = CliRunner()


def run(ws: Path, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(ws)], env={"COLUMNS": "200"})


def otp(output: str) -> str:
    return re.search(r"one-time password for \S+: (\S+)", output).group(1)


def test_users_lifecycle(workspace: Path):
    r = run(workspace, "users", "add", "aroha", "--steward-of", "Ngāti Example")
    assert r.exit_code == 0, r.output
    first = otp(r.output)
    cat = Catalog.open(open_workspace(workspace).db_url)
    who = identity.authenticate(cat, "aroha", first)
    assert who.must_change  # the printed password is one-time

    r = run(workspace, "users", "add", "mere", "--community", "Ngāti Example", "--role", "member", "--by", "aroha")
    assert r.exit_code == 0 and "a member of Ngāti Example" in r.output
    # Nobody grants a role without being that community's steward.
    r = run(workspace, "users", "add", "eve", "--community", "Ngāti Example", "--role", "steward", "--by", "mere")
    assert r.exit_code == 2 and "not a steward" in r.output
    r = run(workspace, "users", "add", "eve")
    assert r.exit_code == 2 and "--steward-of" in r.output

    r = run(workspace, "users", "ls")
    assert "aroha" in r.output and "steward of Ngāti Example" in r.output

    r = run(workspace, "users", "passwd", "mere")
    new = otp(r.output)
    assert identity.authenticate(cat, "mere", new).must_change

    r = run(workspace, "users", "token", "create", "aroha", "--scope", "read", "--scope", "transcribe")
    assert r.exit_code == 0, r.output
    raw = re.search(r"(hk_\S+)", r.output).group(1)
    assert identity.token_person(cat, raw)[1] == {"read", "transcribe"}
    r = run(workspace, "users", "token", "create", "aroha", "--scope", "root")
    assert r.exit_code == 2 and "not one of" in r.output
    tid = re.search(r"token (\d+)", run(workspace, "users", "token", "create", "aroha", "--scope", "read").output)
    assert run(workspace, "users", "token", "revoke", tid.group(1)).exit_code == 0
    assert "aroha" in run(workspace, "users", "token", "ls").output
    assert run(workspace, "users", "token", "revoke", "999").exit_code == 2
    cat.close()


def test_only_the_owner_makes_a_first_steward(workspace: Path):
    cfg = workspace / "hearth.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["owner"] = "someone-else"
    cfg.write_text(yaml.safe_dump(data))
    r = run(workspace, "users", "add", "eve", "--steward-of", "B")
    assert r.exit_code == 2 and "only the workspace owner (someone-else)" in r.output
    cat = Catalog.open(open_workspace(workspace).db_url)
    assert identity.accounts(cat) == []  # nothing was created
    cat.close()


def test_serve_refuses_a_network_address_without_tls(workspace: Path, tmp_path: Path):
    r = run(workspace, "serve", "--host", "0.0.0.0")
    assert r.exit_code == 2 and "refusing to listen on 0.0.0.0 without TLS" in r.output
    r = run(workspace, "serve", "--host", "192.168.1.5", "--tls-cert", str(tmp_path / "c.pem"))
    assert r.exit_code == 2 and "both --tls-cert and --tls-key" in r.output
    r = run(workspace, "serve", "--host", "example.org", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key",
            str(tmp_path / "k.pem"))
    assert r.exit_code == 2 and "no such file" in r.output
    assert "Example:" in run(workspace, "serve", "--help").output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_the_app_on_loopback(workspace: Path):
    """A real uvicorn process: the sign-in page answers, the cookie secret is made 0600 beside the keys."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hearthkit.cli.main", "serve", "--port", str(port),
                             "--workspace", str(workspace)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, COLUMNS="200"))
    try:
        deadline = time.time() + 60
        body = None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    body = resp.read().decode()
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.3)
        assert body is not None and 'name="csrf_token"' in body
        secret = open_workspace(workspace).keys_dir / "web-secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert not list(workspace.rglob("web-secret"))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_worker_factory_builds_the_app_from_the_environment(workspace: Path, monkeypatch):
    from fastapi.testclient import TestClient

    from hearthkit.web.app import factory

    monkeypatch.setenv("HEARTH_WORKSPACE", str(workspace))
    monkeypatch.setenv("HEARTH_BEHIND_PROXY", "1")
    web = factory()
    assert web.state.behind_proxy and web.state.ws.root == workspace.resolve()
    assert TestClient(web).get("/login").status_code == 200


def test_every_new_command_has_an_example():
    for cmd in (["serve"], ["users"], ["users", "add"], ["users", "passwd"], ["users", "ls"], ["users", "token"],
                ["users", "token", "create"], ["users", "token", "revoke"], ["users", "token", "ls"]):
        out = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"}).output
        text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
        assert f"Example: hearth {cmd[0]}" in text, cmd


def test_user_errors_are_one_line(workspace: Path):
    r = runner.invoke(app, ["users", "passwd", "nobody", "--workspace", str(workspace)], env={"COLUMNS": "200"})
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown" in lines[0]

"""Steward CLI: every command's help ends with an example; user errors are one line, exit 2; a full
steward workflow on the tiny speech archive (import, people, protocol, labels, consent, request, approve, audit)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hearthkit.cli.main import app
from tests.conftest import ROOT, hearth

COMMANDS = [["people", "add"], ["protocol", "create"], ["protocol", "add-member"], ["protocol", "assign"],
            ["labels", "apply"], ["labels", "remove"], ["consent", "record"], ["consent", "withdraw"],
            ["data", "show"], ["data", "embargo"], ["audit", "verify"], ["audit", "log"], ["request"], ["approve"],
            ["deny"]]
COMMUNITY = "Te Hapori Tauira (demo community)"


def run(ws: Path, *args: str, code: int = 0):
    """Invoke the CLI in-process (fast: the machine is shared); assert the exit code."""
    res = CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})
    assert res.exit_code == code, f"hearth {' '.join(args)} -> {res.exit_code}:\n{res.output}"
    return res.output


def refused(ws: Path, *args: str) -> str:
    """Run a command that must fail as a user error: exit 2 and exactly one line on stderr; return that line."""
    res = CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})
    assert res.exit_code == 2, (args, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
    return lines[0]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_ends_with_an_example(cmd):
    out = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"}).output
    text = re.sub(r"[│╭╮╰╯─]", " ", out)
    assert re.search(r"Example: hearth " + re.escape(cmd[0]), " ".join(text.split())), out


@pytest.fixture
def imported(workspace: Path, speech_archive: Path) -> Path:
    run(workspace, "data", "import", str(speech_archive))
    return workspace


def _item(ws: Path, speaker: str) -> str:
    con = sqlite3.connect(ws / "catalog.sqlite")
    try:
        return con.execute("SELECT external_id FROM items WHERE speaker = ? AND id NOT IN "
                           "(SELECT item_id FROM labels WHERE item_id IS NOT NULL) ORDER BY external_id",
                           (speaker,)).fetchone()[0]
    finally:
        con.close()


def test_steward_workflow(imported: Path, tmp_path: Path):
    ws = imported
    item = _item(ws, "hemi")
    # Stewards: the workspace owner adds the first, who then adds others.
    run(ws, "people", "add", "aroha", "--community", COMMUNITY, "--role", "steward", "--as-owner")
    run(ws, "people", "add", "mere", "--community", COMMUNITY, "--role", "member", "--by", "aroha")
    # A protocol around one item: only members may use it.
    run(ws, "protocol", "create", "whanau-hemi", "--community", COMMUNITY, "--by", "aroha")
    run(ws, "protocol", "add-member", "whanau-hemi", "mere", "--by", "aroha")
    run(ws, "protocol", "assign", "whanau-hemi", "-c", "demo-korero", "-i", item, "--by", "aroha")
    out = run(ws, "data", "show", "demo-korero", item, "--requester", "rangi", "--as-of", "2026-06-01")
    assert "protocols: whanau-hemi (sharing all)" in out
    assert ("excluded for purpose research, requester rangi, as of 2026-06-01: protocol: requester rangi is not "
            "in every protocol") in " ".join(out.split())
    assert "included for purpose research, requester mere" in run(
        ws, "data", "show", "demo-korero", item, "--requester", "mere", "--as-of", "2026-06-01")
    # A reworded seasonal label, shown with its id, then removed.
    out = run(ws, "labels", "apply", "tk:seasonal", "-c", "demo-korero", "-i", item, "--season", "12-01..02-28",
              "--text", "Kōrero o te takurua", "--language", "mi", "--version", "2", "--by", "aroha")
    label_id = re.search(r"label (\d+)", out).group(1)
    out = run(ws, "data", "show", "demo-korero", item, "--requester", "mere", "--as-of", "2026-06-01")
    assert "Kōrero o te takurua" in out and "12-01..02-28" in out and "tk:seasonal: 2026-06-01 is outside" in out
    run(ws, "labels", "remove", label_id, "--by", "aroha")
    # Consent: record, then the speaker withdraws it.
    out = run(ws, "consent", "record", "-c", "demo-korero", "--scope", "individual", "--subject", "tama",
              "--given-by", "tama", "--given-at", "2026-04-01", "--purpose", "research", "--by", "aroha")
    cid = re.search(r"consent (\d+)", out).group(1)
    tama = _item(ws, "tama")
    assert "included" in run(ws, "data", "show", "demo-korero", tama, "--as-of", "2026-06-01")
    run(ws, "consent", "withdraw", cid, "--by", "tama", "--at", "2026-05-01")
    out = run(ws, "data", "show", "demo-korero", tama, "--as-of", "2026-06-01")
    assert "individual_consent: consent of speaker tama is not in force (withdrawn on 2026-05-01)" in out
    # Embargo.
    run(ws, "data", "embargo", "-c", "demo-korero", "-i", tama, "--until", "2030-01-01", "--by", "aroha")
    assert "embargo 2030-01-01" in run(ws, "data", "show", "demo-korero", tama)
    # A request holds the secret/sacred items; the steward approves; the log verifies.
    out = run(ws, "request", "--purpose", "language_revitalization", "--requester", "demo-technologist",
              "-c", "demo-korero", "--recipe", "asr")
    rid = re.search(r"request (\d+): pending", out).group(1)
    assert "held: demo-korero/" in out and "tk:secret_sacred" in out
    assert "request 1: approved" in run(ws, "approve", rid, "--by", "aroha")
    out = run(ws, "audit", "verify")
    assert "audit chain intact" in out
    kinds = run(ws, "audit", "log")
    for kind in ("import", "person", "protocol", "label", "consent", "withdrawal", "request", "approval"):
        assert f" {kind} " in kinds


def test_user_errors_are_one_line_exit_2(imported: Path):
    ws = imported
    cases = [
        (["labels", "apply", "tk:bogus", "-c", "demo-korero", "--by", "x"], "unknown label 'tk:bogus'"),
        (["labels", "apply", "tk:seasonal", "-c", "demo-korero", "--season", "13-01..02-01", "--by", "x"],
         "--season"),
        (["labels", "apply", "tk:non_commercial", "-c", "demo-korero", "--by", "nobody"], "has no steward yet"),
        (["consent", "withdraw", "999", "--by", "x"], "consent 999 does not exist"),
        (["consent", "record", "-c", "demo-korero", "--scope", "individual", "--subject", "s", "--given-by", "s",
          "--given-at", "yesterday", "--purpose", "research", "--by", "x"], "--given-at 'yesterday'"),
        (["data", "show", "demo-korero", "no-such-item"], "item 'no-such-item' is not in collection"),
        (["approve", "42", "--by", "x"], "request 42 does not exist"),
        (["request", "--purpose", "selling", "--requester", "r", "-c", "demo-korero", "--recipe", "asr"],
         "purpose 'selling'"),
        (["protocol", "add-member", "nope", "mere", "--by", "x"], "protocol 'nope' does not exist"),
    ]
    for args, message in cases:
        assert message in refused(ws, *args)
    run(ws, "people", "add", "aroha", "--community", COMMUNITY, "--role", "steward", "--as-owner")
    # Once through the real executable: one red line on stderr, exit status 2.
    proc = hearth("people", "add", "mallory", "--community", COMMUNITY, "--role", "steward", "--by", "mallory",
                  ws=ws, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "mallory is not a steward of" in proc.stderr


def test_train_refuses_unapproved_request_and_tampered_audit_is_reported(imported: Path, tmp_path: Path):
    ws = imported
    run(ws, "people", "add", "aroha", "--community", COMMUNITY, "--role", "steward", "--as-owner")
    out = run(ws, "request", "--purpose", "language_revitalization", "--requester", "demo-technologist",
              "-c", "demo-korero", "--recipe", "asr")
    rid = re.search(r"request (\d+): pending", out).group(1)
    cfg = yaml.safe_load((ROOT / "configs" / "demo-asr.yaml").read_text())
    cfg["request"]["id"] = int(rid)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    line = refused(ws, "train", str(path))
    assert f"training refused: request {rid} awaits approval by the stewards of {COMMUNITY}" in line
    assert f"request {rid}: pending" in run(ws, "plan", str(path))
    run(ws, "deny", rid, "--by", "aroha", "--note", "not now")
    assert f"training refused: request {rid} was denied by aroha" in refused(ws, "train", str(path))
    # Tamper with the log behind the catalog's back: verify names the event and exits 1.
    con = sqlite3.connect(ws / "catalog.sqlite")
    con.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    con.commit()
    con.close()
    proc = hearth("audit", "verify", ws=ws, check=False)
    assert proc.returncode == 1 and "audit chain broken at event 2" in proc.stdout


def test_demo_plan_still_excludes_by_consent_and_secret_label(imported: Path):
    out = run(imported, "plan", str(ROOT / "configs" / "demo-asr.yaml"))
    for rule in ("individual_consent", "purpose_not_consented", "tk:secret_sacred"):
        assert f"excluded: {rule}" in out
    assert re.search(r"included\s*│\s*[1-9]", out)


def test_approved_request_plans_a_run_with_held_items_and_audits_it(imported: Path, tmp_path: Path):
    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.config import load_config
    from hearthkit.governance import audit
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = imported
    run(ws, "people", "add", "aroha", "--community", COMMUNITY, "--role", "steward", "--as-owner")
    out = run(ws, "request", "--purpose", "language_revitalization", "--requester", "demo-technologist",
              "-c", "demo-korero", "--recipe", "asr")
    rid = int(re.search(r"request (\d+): pending", out).group(1))
    run(ws, "approve", str(rid), "--by", "aroha")
    cfg = load_config(ROOT / "configs" / "demo-asr.yaml", [f"request.id={rid}", "name=approved-run"])
    workspace = open_workspace(ws)
    catalog = Catalog.open(workspace.db_url)
    try:
        run_dir, manifest, resumed = plan_run(workspace, catalog, cfg)
        assert not resumed and "tk:secret_sacred" in manifest.restrictions
        assert not any(e["rule"] == "tk:secret_sacred" for e in manifest.excluded)
        event = audit.events(catalog, "manifest")[-1]["data"]
        assert event["manifest"] == manifest.hash and event["request"] == rid and event["run"] == "approved-run"
        # Withdrawing consent after approval changes the manifest: the run may no longer resume or start.
        run(ws, "consent", "withdraw", "2", "--by", "aroha", "--at", "2026-01-01")
        line = refused(ws, "train", str(ROOT / "configs" / "demo-asr.yaml"), "--set", f"request.id={rid}")
        assert "training refused" in line and "changed since approval" in line
    finally:
        catalog.close()

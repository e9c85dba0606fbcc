"""Issue 19 class 9: nobody makes themselves a steward. A role comes from a steward of the community (`by`) or
the workspace owner (verified by the CLI with Workspace.require_owner), on SQLite and PostgreSQL, and by the CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from builder import Builder
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.cli.main import app
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.stewardship import add_person, require_steward
from hearthkit.workspace import current_os_user
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)


@pytest.fixture
def cat(db_url: str) -> Catalog:  # noqa: F811
    c = Catalog.open(db_url, create=True)
    yield c
    c.close()


def _members(cat: Catalog) -> list[tuple[str, str]]:
    with cat.session() as s:
        from sqlalchemy import select

        from hearthkit.catalog.models import Community, Membership, Person

        return sorted(s.execute(select(Person.name, Membership.role).join(Membership).join(
            Community, Community.id == Membership.community_id)).all())


def test_nobody_grants_themselves_a_role(cat: Catalog):
    Builder(cat).collection(community="Ngāti A")
    with pytest.raises(HearthError, match=r"needs a steward of it \(--by NAME\) or the workspace owner \(--as-owner"):
        add_person(cat, "mallory", "Ngāti A", "steward")
    with pytest.raises(HearthError, match="Ngāti A has no steward yet; the workspace owner adds the first"):
        add_person(cat, "mallory", "Ngāti A", "steward", by="mallory")
    with pytest.raises(HearthError, match="has no steward yet"):  # a new community is no way round it
        add_person(cat, "mallory", "Ngāti New", "steward", by="mallory")
    assert _members(cat) == [] and audit.events(cat) == []


def test_owner_then_stewards_grant(cat: Catalog):
    add_person(cat, "aroha", "Ngāti A", "steward", owner="kaitiaki")
    add_person(cat, "mere", "Ngāti A", "member", by="aroha")
    with pytest.raises(HearthError, match="mere is not a steward of Ngāti A; ask one of: aroha"):
        add_person(cat, "mallory", "Ngāti A", "steward", by="mere")  # a member grants nothing
    with pytest.raises(HearthError, match="mere is not a steward of Ngāti A"):
        add_person(cat, "mere", "Ngāti A", "steward", by="mere")  # nor promotes themselves
    with pytest.raises(HearthError, match="Ngāti B has no steward yet"):
        add_person(cat, "tama", "Ngāti B", "steward", by="aroha")  # a steward of A is nothing in B
    add_person(cat, "hemi", "Ngāti A", "researcher", owner="kaitiaki")  # the owner grants any role
    assert _members(cat) == [("aroha", "steward"), ("hemi", "researcher"), ("mere", "member")]
    events = audit.events(cat, "person")
    assert [(e["actor"], e["data"]["person"]) for e in events] == [
        ("owner:kaitiaki", "aroha"), ("aroha", "mere"), ("owner:kaitiaki", "hemi")]
    with cat.session() as s:
        require_steward(s, "aroha", "Ngāti A")


def test_cli_first_steward_needs_the_owner(workspace: Path):
    env = {"HEARTH_WORKSPACE": str(workspace), "COLUMNS": "200"}

    def hearth(*args: str, code: int = 0) -> str:
        res = CliRunner().invoke(app, list(args), env=env)
        assert res.exit_code == code, res.output
        if code:
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
            return lines[0]
        return res.output

    add = ("people", "add", "mallory", "--community", "Ngāti A", "--role", "steward")
    assert "--as-owner" in hearth(*add, code=2)
    assert "has no steward yet" in hearth(*add, "--by", "mallory", code=2)
    # The workspace belongs to someone else: --as-owner is refused for this OS account.
    cfg_path = workspace / "hearth.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg_path.write_text(yaml.safe_dump({**cfg, "owner": "somebody-else"}))
    line = hearth(*add, "--as-owner", code=2)
    assert f"only the workspace owner (somebody-else) may grant roles in Ngāti A; you are {current_os_user()}" in line
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert "aroha is now a steward of Ngāti A" in hearth("people", "add", "aroha", "--community", "Ngāti A",
                                                         "--role", "steward", "--as-owner")
    assert "mere is now a member" in hearth("people", "add", "mere", "--community", "Ngāti A", "--role", "member",
                                            "--by", "aroha")
    log = hearth("audit", "log", "--kind", "person")
    assert f"owner:{current_os_user()}" in log and "aroha" in log

"""A workspace for the requests, models, withdrawal, audit and use-a-model tests: a copy of the session's tiny
trained ASR workspace, with people, accounts, a protocol and a second community (not a pytest fixture module, so
the browser tests and the TestClient tests share it)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import Person
from hearthkit.governance import identity
from hearthkit.governance.stewardship import add_person, add_protocol_member, create_protocol
from hearthkit.workspace import current_os_user, open_workspace

A = "Te Hapori Tauira (demo community)"  # the tiny archive's community
B = "Other Community"
PASSWORD = "a long enough test password 7"
PEOPLE = {"steward_a": "whetu", "steward_b": "ben", "researcher": "rangi", "member": "ngaio", "registered": "noa"}


@dataclass
class World:
    """The copied workspace, its root and the model trained in it."""

    root: Path
    model: str = "tiny-asr"


def make_world(tiny_ws: Path, dest: Path) -> World:
    """Copy TINY_WS (and its key folder) under DEST and add the people every test here signs in as."""
    pristine = tiny_ws.parent / "pristine" / tiny_ws.name  # as trained, before other tests added models or events
    if pristine.is_dir():
        tiny_ws = pristine
    root = dest / tiny_ws.name
    shutil.copytree(tiny_ws, root)
    keys = tiny_ws.parent / f"{tiny_ws.name}.keys"
    if keys.exists():
        shutil.copytree(keys, dest / keys.name)
    ws = open_workspace(root)
    cat = open_workspace_catalog(ws)
    owner = current_os_user()
    add_person(cat, "whetu", A, "steward", owner=owner)
    add_person(cat, "ben", B, "steward", owner=owner)
    add_person(cat, "rangi", A, "researcher", by="whetu")
    add_person(cat, "ngaio", A, "member", by="whetu")
    create_protocol(cat, "elders", A, "whetu")
    add_protocol_member(cat, "elders", "ngaio", "whetu")
    with cat.session() as s:
        s.add(Person(name="noa"))  # an account with no role anywhere
    for name in PEOPLE.values():
        one_time = identity.reset_password(cat, name)
        with cat.session() as s:
            pid = s.query(Person).filter_by(name=name).one().id
        identity.change_password(cat, pid, one_time, PASSWORD)
    cat.close()
    return World(root)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, role: str) -> str:
    """Sign CLIENT (a TestClient) in as ROLE; return a CSRF token for its forms."""
    page = client.get("/login")
    r = client.post("/login", data={"name": PEOPLE[role], "password": PASSWORD, "csrf_token": csrf_of(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/requests").text)

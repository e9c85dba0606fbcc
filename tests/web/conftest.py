"""A small real workspace for the web app: two communities, every role with an account, items at each access level.

W2 reuses it: fixture `webws` (a fresh copy per test: workspace, catalog, store and key folder), `client` (a
TestClient over it), and `login(client, role)`. Roles: anonymous, registered, member (of A), protocol (member of
A inside A's protocol "A-women"), researcher (of A), steward_a, steward_b, owner (an account named as the workspace
owner, no community role: the owner at the terminal is not a web role).
"""

from __future__ import annotations

import io
import shutil
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Community,
    Item,
    ItemProtocol,
    Label,
    Membership,
    Person,
    Protocol,
    ProtocolMember,
)
from hearthkit.governance import identity
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import current_os_user, init_workspace, open_workspace

ROLES = ("anonymous", "registered", "member", "protocol", "researcher", "steward_a", "steward_b", "owner")
# Login name of each role's account (the owner's is the OS account that owns the workspace).
NAMES = {"registered": "rangi", "member": "mere", "protocol": "hine", "researcher": "rita", "steward_a": "aroha",
         "steward_b": "bruno", "owner": current_os_user()}
PASSWORD = "correct horse battery"  # every test account's password (set after the one-time one)
SECRET = b"w" * 64

# (collection, community, access, [(item, access, extra)]) — extra: speaker, protocol, label, meta protocols, audio
COLLECTIONS = [
    ("a-open", "A", "open", [("open-1", None, {"audio": True, "text": "open words"}),
                             ("open-secret", None, {"label": "tk:secret_sacred", "audio": True,
                                                    "text": "secret words one"})]),
    ("a-reg", "A", "registered", [("reg-1", None, {"text": "registered words"})]),
    ("a-comm", "A", "community", [("comm-1", None, {"text": "community words", "audio": True}),
                                  ("comm-prot", None, {"protocol": "A-women", "audio": True,
                                                       "text": "women words"}),
                                  ("comm-meta", None, {"meta_protocols": ["A-women"], "text": "sheet words"}),
                                  ("comm-secret", None, {"label": "tk:secret_sacred", "text": "secret words two",
                                                         "label_text": "<script>alert(1)</script> Tapu",
                                                         "audio": True, "sealed": True})]),
    ("a-prot", "A", "protocol", [("prot-1", None, {"protocol": "A-women", "text": "protocol level words"})]),
    ("b-comm", "B", "community", [("b-1", None, {"text": "bravo words", "audio": True}),
                                  ("b-secret", None, {"label": "tk:secret_sacred", "text": "bravo secret",
                                                      "audio": True, "sealed": True})]),
    ("b-open", "B", "open", [("b-open-1", None, {"text": "bravo open"})]),
]
# What each role may see, by item external id (the ground truth of the access matrix).
_A_MEMBER = {"open-1", "reg-1", "comm-1", "b-open-1"}
VISIBLE = {
    "anonymous": {"open-1", "b-open-1"},
    "registered": {"open-1", "reg-1", "b-open-1"},
    "member": _A_MEMBER,
    "researcher": _A_MEMBER,
    "protocol": _A_MEMBER | {"comm-prot", "comm-meta", "prot-1"},
    "steward_a": {it for c, comm, _, items in COLLECTIONS if comm == "A" for it, *_ in items} | {"b-open-1"},
    "steward_b": {"open-1", "reg-1", "b-1", "b-secret", "b-open-1"},
    "owner": {"open-1", "reg-1", "b-open-1"},
}
ALL_ITEMS = {it for _c, _comm, _a, items in COLLECTIONS for it, *_ in items}
# Words that appear only in an item's title or text: a refusal page must contain none of those it hides.
WORDS = {it: extra.get("text", it) for _c, _comm, _a, items in COLLECTIONS for it, _acc, extra in items}


def wav_bytes(seconds: float = 0.2, rate: int = 8000, tone: int = 7) -> bytes:
    """A short real WAV file (silence with a marker byte pattern)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes([tone, 0]) * int(seconds * rate))
    return buf.getvalue()


@dataclass
class WebWS:
    """The workspace built for web tests, with ids by external id."""

    root: Path
    items: dict[str, int] = field(default_factory=dict)
    collections: dict[str, int] = field(default_factory=dict)
    audio: dict[str, bytes] = field(default_factory=dict)
    token_id: int = 0  # steward_a's API token (scope read), for the revoke rows
    label_id: int = 0  # an item label on comm-1 (tk:attribution) that steward_a may remove

    @property
    def ws(self):
        return open_workspace(self.root)

    def catalog(self) -> Catalog:
        return Catalog.open(self.ws.db_url)


def _build(root: Path) -> WebWS:
    ws = init_workspace(root)
    cat = Catalog.open(ws.db_url)
    store = workspace_store(ws)
    out = WebWS(ws.root)
    with cat.session() as s:
        comms = {n: Community(name=n) for n in ("A", "B")}
        s.add_all(comms.values())
        s.flush()
        people = {role: Person(name=name) for role, name in NAMES.items()}
        s.add_all(people.values())
        s.flush()
        for role, comm, r in (("member", "A", "member"), ("protocol", "A", "member"), ("researcher", "A", "researcher"),
                              ("steward_a", "A", "steward"), ("steward_b", "B", "steward")):
            s.add(Membership(community_id=comms[comm].id, person_id=people[role].id, role=r))
        prot = Protocol(name="A-women", community_id=comms["A"].id)
        s.add(prot)
        s.flush()
        s.add(ProtocolMember(protocol_id=prot.id, person_id=people["protocol"].id))
        for cname, comm, access, items in COLLECTIONS:
            c = Collection(name=cname, community=comm, access=access)
            s.add(c)
            s.flush()
            out.collections[cname] = c.id
            for ext, iacc, extra in items:
                data = wav_bytes(tone=len(out.items) + 1) if extra.get("audio") else ext.encode()
                digest = store.put(data, seal_for=(cname, comm) if extra.get("sealed") else None)
                meta = {"protocols": extra["meta_protocols"]} if "meta_protocols" in extra else {}
                it = Item(collection_id=c.id, external_id=ext, kind="audio" if extra.get("audio") else "text",
                          content_hash=digest, size_bytes=len(data), media_type="audio/wav" if extra.get("audio")
                          else None, speaker=f"spk-{ext}", text=extra.get("text"), meta=meta, access=iacc)
                s.add(it)
                s.flush()
                out.items[ext] = it.id
                if extra.get("audio"):
                    out.audio[ext] = data
                if "protocol" in extra:
                    s.add(ItemProtocol(item_id=it.id, protocol_id=prot.id))
                if "label" in extra:
                    s.add(Label(item_id=it.id, key=extra["label"], community=comm, text=extra.get("label_text"),
                                language="mi" if extra.get("label_text") else None, data={}))
        lab = Label(item_id=out.items["comm-1"], key="tk:attribution", community="A", text="Kōrero o te iwi",
                    language="mi", data={})
        s.add(lab)
        s.flush()
        out.label_id = lab.id
    for role in NAMES:
        with cat.session() as s:
            pid = s.scalar(select(Person.id).where(Person.name == NAMES[role]))
        otp = identity.reset_password(cat, NAMES[role])
        identity.change_password(cat, pid, otp, PASSWORD)
    out.token_id, _ = identity.create_token(cat, NAMES["steward_a"], "fixture", ["read"])
    cat.close()
    return out


@pytest.fixture(scope="session")
def _webws_template(tmp_path_factory) -> WebWS:
    return _build(tmp_path_factory.mktemp("webtemplate") / "ws")


@pytest.fixture
def webws(_webws_template: WebWS, tmp_path: Path) -> WebWS:
    """A fresh copy of the web test workspace (catalog, store and key folder) for one test."""
    src = _webws_template.root
    dst = tmp_path / "ws"
    shutil.copytree(src, dst)
    shutil.copytree(src.parent / f"{src.name}.keys", tmp_path / "ws.keys")
    t = _webws_template
    return WebWS(dst.resolve(), dict(t.items), dict(t.collections), dict(t.audio), t.token_id, t.label_id)


@pytest.fixture
def app(webws: WebWS):
    from hearthkit.web.app import create_app

    return create_app(webws.ws, secret=SECRET)


@pytest.fixture
def client(app) -> TestClient:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def csrf(client: TestClient, path: str = "/login") -> str:
    """The CSRF token a page gives this client (read from its hidden form field)."""
    import re

    html = client.get(path).text
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert m, f"no CSRF field on {path}"
    return m.group(1)


def login(client: TestClient, role: str) -> TestClient:
    """Sign CLIENT in as ROLE (anonymous: nothing); returns the client."""
    if role == "anonymous":
        return client
    r = client.post("/login", data={"name": NAMES[role], "password": PASSWORD, "csrf_token": csrf(client),
                                    "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client

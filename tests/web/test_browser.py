"""Browser tests: Playwright drives Debian's Chromium against a real `hearth serve` on 127.0.0.1 over a workspace
with a tiny trained speech model. Set HEARTH_WEB_SCREENSHOTS=docs/web to refresh the documentation's screenshots."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import Collection, Item, Label
from hearthkit.workspace import open_workspace
from tests.conftest import TINY_ASR_CONFIG, hearth
from tests.web.w2world import PASSWORD, PEOPLE, make_world

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                "/usr/bin/chromium (`make test` installs it; or `apt-get install chromium`)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_asr_model, tmp_path_factory):
    """`hearth serve` as a subprocess over a copy of the tiny workspace: (base URL, workspace root)."""
    world = make_world(tiny_asr_model[0], tmp_path_factory.mktemp("browser"))
    port = _free_port()
    env = dict(os.environ, HEARTH_WORKSPACE=str(world.root), HEARTH_WEB_RATE="0")
    log = (world.root.parent / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "hearthkit.cli.main", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/login", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError((world.root.parent / "serve.log").read_text()) from None
            time.sleep(0.1)
    yield base, world.root
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _shot(page, name: str) -> None:
    """Save a full-page screenshot to $HEARTH_WEB_SCREENSHOTS (the docs' folder) when asked."""
    folder = os.environ.get("HEARTH_WEB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _page(browser, base: str, role: str, viewport: dict | None = None):
    """A fresh browser context signed in as ROLE through the login form."""
    ctx = browser.new_context(base_url=base, viewport=viewport or {"width": 1100, "height": 900},
                              accept_downloads=True)
    page = ctx.new_page()
    page.goto("/login")
    page.fill("#name", PEOPLE[role])
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[-2000:]
    return page


def test_1_request_filed_approved_in_the_browser_then_trained_on_exactly_that_manifest(server, browser, tmp_path):
    base, root = server
    researcher = _page(browser, base, "researcher")
    researcher.goto("/requests/new")
    researcher.select_option("#recipe", "asr")
    researcher.select_option("#purpose", "language_revitalization")
    researcher.check("input[name=collections][value=demo-korero]")
    _shot(researcher, "request-new")
    researcher.click("main button[type=submit]")
    researcher.wait_for_url("**/requests/*")
    rid = int(researcher.url.rsplit("/", 1)[1])
    assert "pending" in researcher.inner_text("h1")

    steward = _page(browser, base, "steward_a")
    steward.goto(f"/requests/{rid}")
    assert steward.locator("audio").count() >= 1  # held items playable by the steward
    _shot(steward, "request-review")
    phone = _page(browser, base, "steward_a", viewport={"width": 390, "height": 844})
    phone.goto(f"/requests/{rid}?lang=es")
    assert "Resumen del manifiesto" in phone.content()  # the review in Spanish, readable on a phone
    _shot(phone, "request-review-es-phone")
    steward.check("input[name=decision][value=approve]")
    steward.fill("#note", "approved for the revitalisation class")
    steward.click("main form[action$=decision] button[type=submit]")
    steward.wait_for_load_state()
    assert "approved" in steward.inner_text("h1")
    approved_hash = steward.inner_text("code.hash").strip()

    # `hearth train` with request.id runs on exactly the manifest the steward approved.
    cfg = yaml.safe_load(TINY_ASR_CONFIG)
    cfg.update(name="tiny-asr-approved")
    cfg["request"].update(id=rid, requester="rangi", purpose="language_revitalization")
    cfg["train"].update(steps=4, checkpoint_every=4, log_every=2)
    path = tmp_path / "approved.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    hearth("train", str(path), "--no-eval", ws=root, timeout=300)
    manifest = (root / "runs" / "tiny-asr-approved" / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == approved_hash
    assert json.loads(manifest)["request"]["request_id"] == rid


def _secret_items(root: Path) -> list[tuple[int, str]]:
    cat = open_workspace_catalog(open_workspace(root))
    with cat.session() as s:
        rows = s.execute(select(Item.id, Item.external_id).join(Label, Label.item_id == Item.id)
                         .where(Label.key == "tk:secret_sacred")).all()
        coll = s.scalar(select(Collection.id).where(Collection.name == "demo-korero"))
    cat.close()
    return [(i, e) for i, e in rows], coll


def test_2_researcher_outside_the_protocol_sees_no_secret_item_nor_its_audio(server, browser):
    base, root = server
    secret, coll = _secret_items(root)
    assert secret
    page = _page(browser, base, "researcher")
    page.goto(f"/collections/{coll}")
    html = page.content()
    assert "demo-korero" in html
    for item_id, ext in secret:
        assert ext not in html and f"/items/{item_id}/audio" not in html
    page.goto(f"/search?q={secret[0][1]}")  # the query is echoed in the search box; no result may link to it
    assert all(f"/items/{item_id}" not in page.content() for item_id, _ in secret)
    for item_id, ext in secret:
        for url in (f"/items/{item_id}", f"/items/{item_id}/audio", f"/api/v1/items/{item_id}"):
            resp = page.goto(url)
            assert resp.status in (403, 404), url
            assert ext not in page.content()


def test_3_member_uploads_a_recording_and_downloads_its_transcript_as_vtt(server, browser, tiny_speech_archive):
    base, _ = server
    page = _page(browser, base, "member")
    page.goto("/use")
    _shot(page, "use")
    page.set_input_files("#recording", str(sorted(tiny_speech_archive.rglob("*.wav"))[0]))
    page.click("form[action='/use/transcribe'] button[type=submit]")
    page.wait_for_selector("#download-vtt", timeout=120_000)  # the job page refreshes itself until done
    _shot(page, "transcript")
    with page.expect_download() as dl:
        page.click("#download-vtt")
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert text.startswith("WEBVTT") and "-->" in text
    assert dl.value.suggested_filename == "transcript.vtt"


def _spoken_index(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Index demo-korero for spoken search (in process, as `hearth search-index` does), after placing one speaker's
    recordings under protocol `elders` (ngaio is inside, rangi outside): (elders' items, other items), id by name."""
    from hearthkit.governance.stewardship import assign_protocol
    from hearthkit.lineage.serving import resolve_use
    from hearthkit.recipes.kws.index import build_index
    from hearthkit.store.vault import workspace_store

    ws = open_workspace(root)
    cat = open_workspace_catalog(ws)
    with cat.session() as s:
        rows = s.execute(select(Item.external_id, Item.id, Item.speaker).join(Collection)
                         .where(Collection.name == "demo-korero")).all()
    speaker = sorted({sp for _e, _i, sp in rows if sp})[0]
    inside = sorted(e for e, _i, sp in rows if sp == speaker)
    assign_protocol(cat, "elders", "demo-korero", inside, "whetu", store=workspace_store(ws))
    served = resolve_use(cat, "tiny-asr", "transcribe", "ngaio", "language_revitalization")
    doc = build_index(cat, ws, "korero", "demo-korero", served, "language_revitalization", "ngaio", beam=1)
    cat.close()
    indexed = {i["external_id"]: i["item_id"] for i in doc["items"]}
    return ({e: i for e, i in indexed.items() if e in inside}, {e: i for e, i in indexed.items() if e not in inside})


def test_3b_spoken_search_plays_the_stretch_and_shows_nothing_of_a_protocol_to_an_outsider(server, browser):
    from hearthkit.recipes.kws.index import open_index
    from hearthkit.store.vault import workspace_store

    base, root = server
    elders, others = _spoken_index(root)
    assert elders and others
    member = _page(browser, base, "member")  # ngaio: inside the protocol
    member.goto("/spoken")
    member.select_option("#index", "korero")
    member.fill("#q", "a")
    member.click("main form[role=search] button[type=submit]")
    member.wait_for_load_state()
    rows = member.locator("tr.hit")
    assert rows.count() > 0
    players = member.locator("tr.hit audio")
    assert players.count() == rows.count()
    src = players.first.get_attribute("src")
    m = re.fullmatch(r"/items/(\d+)/audio#t=([\d.]+),([\d.]+)", src)
    assert m and float(m.group(2)) < float(m.group(3)), src  # the player starts and stops at the hit's stretch
    assert member.request.get(base + src.split("#")[0]).status == 200
    _shot(member, "spoken-search")
    ws = open_workspace(root)
    idx, store = open_index(ws, "korero"), workspace_store(ws)
    everything = set(elders.values()) | set(others.values())
    # A term whose best hits include a recording under the protocol (which one depends on the tiny model's scores).
    term = next((t for t in "aeiouhkmnprtw" if {h["item"] for h in idx.search(store, everything, t, limit=20,
                                                                               floor=0.05)} & set(elders)), None)
    assert term, "no one-letter term finds a protocol recording in the tiny model's index"
    mine = member.request.get(f"{base}/api/v1/spoken?index=korero&q={term}").json()["hits"]
    assert mine == idx.search(store, everything, term, limit=20, floor=0.05)
    assert {h["item"] for h in mine} & set(elders)  # the protocol's recordings are found for those inside it

    outsider = _page(browser, base, "researcher")  # rangi: a researcher of the community, outside the protocol
    outsider.goto(f"/spoken?index=korero&q={term}")
    html = outsider.content()
    assert not any(f"/items/{i}/" in html or f"/items/{i}\"" in html for i in elders.values())
    theirs = outsider.request.get(f"{base}/api/v1/spoken?index=korero&q={term}").json()
    # Exactly a search of the items outside the protocol: no hit, score or count of the protocol's reaches them.
    assert theirs["hits"] == idx.search(store, set(others.values()), term, limit=20, floor=0.05)
    assert not {h["item"] for h in theirs["hits"]} & set(elders) and set(theirs) == {"indexes", "index", "q", "hits",
                                                                                     "error"}
    bad = outsider.request.get(f"{base}/api/v1/spoken?index=../korero&q=a")
    assert bad.status == 404 and "that you may search" in bad.json()["error"]
    anonymous = browser.new_context(base_url=base).new_page()
    anonymous.goto("/spoken?index=korero&q=a")
    assert "/login" in anonymous.url  # signed-in people only
    # Each search is audited like the CLI's: the searcher, the index, how many items were theirs; never the term.
    cat = open_workspace_catalog(ws)
    try:
        from hearthkit.governance import audit

        searches = [e for e in audit.events(cat, "data_access") if e["data"].get("phase") == "search"]
    finally:
        cat.close()
    assert {(e["actor"], e["data"]["items"], e["data"]["via"]) for e in searches} == {
        ("ngaio", len(elders) + len(others), "web"), ("rangi", len(others), "web")}
    assert all(e["data"]["collection"] == "demo-korero" and '"a"' not in json.dumps(e["data"]) for e in searches)


def test_4_steward_records_a_withdrawal_and_the_model_needs_retraining(server, browser):
    base, _ = server
    page = _page(browser, base, "steward_a")
    page.goto("/models/tiny-asr")
    assert "active" in page.inner_text("main p")
    _shot(page, "model")
    page.goto("/withdrawals")
    page.select_option("#collection", "demo-korero")
    page.check("input[name=scope][value=speaker]")
    page.fill("#subject", "hemi")
    page.fill("#reason", "asked the community to withdraw his recordings")
    page.click("form[action='/withdrawals'] button[type=submit]")
    page.wait_for_url("**/withdrawals/*")
    assert "tiny-asr" in page.content() and "needs retrain" in page.inner_text("main")
    _shot(page, "withdrawal")
    page.goto("/models/tiny-asr")
    assert "needs retrain" in page.inner_text("main p")


def test_5_audit_page_reports_intact_then_tampering(server, browser):
    base, root = server
    page = _page(browser, base, "steward_a")
    page.goto("/audit")
    _shot(page, "audit")
    page.goto("/audit/verify")
    assert "The log is intact." in page.inner_text("main")
    _shot(page, "audit-verify")
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("UPDATE audit_events SET actor = 'nobody' WHERE seq = 3")
    page.goto("/audit/verify")
    assert "tampered with at event 3" in page.inner_text("main")
    _shot(page, "audit-tampered")

"""Model pages: only models the viewer may see; the card escaped, per-group charts, lineage, status, impact."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from hearthkit.catalog.models import Model
from hearthkit.web.app import create_app
from hearthkit.workspace import open_workspace
from tests.web.w2world import make_world, sign_in


@pytest.fixture
def app(tiny_asr_model, tmp_path):
    world = make_world(tiny_asr_model[0], tmp_path)
    return create_app(open_workspace(world.root), secret=b"w2-test-secret-" * 3)


def test_member_sees_card_charts_lineage_and_status(app):
    c = TestClient(app)
    sign_in(c, "researcher")
    assert [m["name"] for m in c.get("/api/v1/models").json()["models"]] == ["tiny-asr"]
    doc = c.get("/api/v1/models/tiny-asr").json()
    assert doc["status"] == "active" and doc["lineage"]["collections"][0]["name"] == "demo-korero"
    assert doc["lineage"]["manifest"]["item_count"] > 0 and doc["results"], "per-group results come from the card"
    page = c.get("/models/tiny-asr").text
    assert "<svg" in page and "<rect" in page  # charts drawn inline, no script
    assert "<script" not in page and "demo-korero" in page
    assert "No withdrawal touches this model." in page


def test_models_are_hidden_from_those_without_a_role_in_their_communities(app):
    for role in ("registered", "steward_b"):
        c = TestClient(app)
        sign_in(c, role)
        assert c.get("/api/v1/models").json()["models"] == []
        r = c.get("/models/tiny-asr")
        assert r.status_code == 404 and "demo-korero" not in r.text
        assert c.get("/api/v1/models/tiny-asr").status_code == 404
    assert TestClient(app).get("/api/v1/models/tiny-asr").status_code == 401


def test_a_protocol_restricted_model_only_for_its_members_and_stewards(app):
    with app.state.catalog.session() as s:
        s.query(Model).filter_by(name="tiny-asr").one().restrictions = ["tk:secret_sacred", "protocol:elders"]
    seen = {}
    for role in ("researcher", "member", "steward_a"):
        c = TestClient(app)
        sign_in(c, role)
        seen[role] = c.get("/models/tiny-asr").status_code
    assert seen == {"researcher": 404, "member": 200, "steward_a": 200}


def test_card_markup_is_escaped(app, tmp_path):
    with app.state.catalog.session() as s:
        m = s.query(Model).filter_by(name="tiny-asr").one()
        card = tmp_path / "card.md"
        shutil.copy(m.card_path, card)
        m.card_path = str(card)
    card.write_text(card.read_text() + '\n<script>alert("x")</script>\n\n[x](javascript:alert(1))\n')
    c = TestClient(app)
    sign_in(c, "researcher")
    page = c.get("/models/tiny-asr").text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert 'href="javascript:' not in page

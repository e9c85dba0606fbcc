"""Revoking a model outright: only a steward of a community whose data it learned from, with a reason, audited;
descendants need retraining; afterwards nothing serves, exports or trains from it."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from sqlalchemy import select

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.lineage.registry import guard
from hearthkit.lineage.revoke import revoke_model
from hearthkit.workspace import open_workspace
from tests.conftest import hearth
from tests.web.w2world import make_world


@pytest.fixture
def world(tiny_asr_model, tmp_path: Path):
    """A copy of the trained tiny-asr workspace with stewards whetu (its data's community) and ben (another),
    member ngaio, plus two descendants registered as catalog rows (a real child would need two more trainings;
    only parent_id matters to revocation): child (active) <- grandchild (active)."""
    w = make_world(tiny_asr_model[0], tmp_path)
    cat = open_workspace_catalog(open_workspace(w.root))
    with cat.session() as s:
        parent = s.scalar(select(Model).where(Model.name == "tiny-asr"))
        child = Model(name="child", run_id=parent.run_id, path=str(w.root / "models" / "child"), recipe="asr",
                      restrictions=[], parent_id=parent.id)
        s.add(child)
        s.flush()
        s.add(Model(name="grandchild", run_id=parent.run_id, path=str(w.root / "models" / "grandchild"),
                    recipe="asr", restrictions=[], parent_id=child.id))
    yield w, cat
    cat.close()


def _status(cat, name: str) -> tuple[str, str | None]:
    with cat.session() as s:
        m = s.scalar(select(Model).where(Model.name == name))
        return m.status, m.status_reason


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\x00\x01" * 8000)
    return path


def test_only_a_steward_of_the_datas_community_revokes_with_a_reason(world) -> None:
    w, cat = world
    before = len(audit.events(cat))
    for who, msg in (("ben", "ben is not a steward of a community whose data tiny-asr learned from"),
                     ("ngaio", "ngaio is not a steward"), ("nobody", "nobody is not a steward")):
        r = hearth("models", "revoke", "tiny-asr", "--by", who, "--reason", "not ours to use", ws=w.root, check=False)
        assert r.returncode != 0 and msg in r.stdout + r.stderr, (who, r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr and len((r.stdout + r.stderr).strip().splitlines()) == 1
    for reason in ("", "   "):
        r = hearth("models", "revoke", "tiny-asr", "--by", "whetu", "--reason", reason, ws=w.root, check=False)
        assert r.returncode != 0 and "needs a reason" in r.stdout + r.stderr
    r = hearth("models", "revoke", "tiny-asr", "--by", "whetu", ws=w.root, check=False)
    assert r.returncode != 0 and "--reason" in r.stdout + r.stderr  # the option itself is required
    r = hearth("models", "revoke", "no-such-model", "--by", "whetu", "--reason", "x", ws=w.root, check=False)
    assert r.returncode != 0 and "no model named 'no-such-model'" in r.stdout + r.stderr
    # Nothing changed on any refusal: statuses and the audit log are as they were.
    assert [_status(cat, n)[0] for n in ("tiny-asr", "child", "grandchild")] == ["active"] * 3
    assert len(audit.events(cat)) == before

    out = hearth("models", "revoke", "tiny-asr", "--by", "whetu", "--reason", "the council withdrew its use",
                 ws=w.root).stdout
    assert "revoked tiny-asr" in out and "child, grandchild" in out
    assert _status(cat, "tiny-asr") == ("revoked", "revoked by whetu: the council withdrew its use")
    for name in ("child", "grandchild"):
        status, why = _status(cat, name)
        assert status == "needs-retrain" and "its parent tiny-asr was revoked" in why, (name, why)
    ev = audit.events(cat, "revocation")
    assert len(ev) == 1 and ev[0]["actor"] == "whetu"
    assert ev[0]["data"]["model"] == "tiny-asr" and ev[0]["data"]["reason"] == "the council withdrew its use"
    assert ev[0]["data"]["descendants"] == ["child", "grandchild"]
    assert ev[0]["data"]["communities"] == ["Te Hapori Tauira (demo community)"]
    assert audit.verify(cat).ok

    r = hearth("models", "revoke", "tiny-asr", "--by", "whetu", "--reason", "again", ws=w.root, check=False)
    assert r.returncode != 0 and "tiny-asr is already revoked" in r.stdout + r.stderr
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1 and len(audit.events(cat, "revocation")) == 1


def test_a_revoked_model_is_not_served_exported_or_trained_from(world, tmp_path: Path) -> None:
    w, cat = world
    revoke_model(cat, "tiny-asr", "whetu", "must not be used")
    rec = _wav(tmp_path / "rec.wav")
    r = hearth("transcribe", "tiny-asr", str(rec), "--out", str(tmp_path / "out"), ws=w.root, check=False)
    assert r.returncode != 0 and "tiny-asr is revoked and may not be used" in r.stdout + r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    r = hearth("export", "tiny-asr", str(tmp_path / "exported"), ws=w.root, check=False)
    assert r.returncode != 0 and "tiny-asr is revoked" in r.stdout + r.stderr and not (tmp_path / "exported").exists()
    with cat.session() as s:
        for purpose in ("research", "community_use"):  # init_from goes through the same guard (launch/plan.py)
            with pytest.raises(HearthError, match="revoked"):
                guard(s, "tiny-asr", purpose)
        with pytest.raises(HearthError, match="needs retraining"):
            guard(s, "child", "research")
    refused = [e for e in audit.events(cat, "serve_refused") if e["data"].get("model") == "tiny-asr"]
    assert refused, "a refused transcription is audited"


def test_library_refusals_change_nothing(world) -> None:
    _w, cat = world
    for by, reason, msg in (("ben", "x", "ben is not a steward"), ("whetu", "", "needs a reason"),
                            ("whetu", None, "needs a reason")):
        with pytest.raises(HearthError, match=msg):
            revoke_model(cat, "tiny-asr", by, reason)
    assert _status(cat, "tiny-asr") == ("active", None)
    assert audit.events(cat, "revocation") == []

"""`kill -9` in the middle of an import: catalog and store stay consistent, and re-running finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.ingest.archive_maker import speech_items, write_info

N, BATCH = 120, 5


def test_killed_import_is_consistent_and_rerun_finishes(tmp_path, workspace):
    folder = tmp_path / "archive"
    speech_items(folder, N)
    write_info(folder, restricted=True)  # encrypted: data key creation is part of what must survive
    env = dict(os.environ, HEARTH_WORKSPACE=str(workspace), PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "hearthkit.cli.main", "data", "import", str(folder),
                             "--batch-size", str(BATCH)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    for line in proc.stdout:
        if line.startswith("saved "):  # the first batch is committed: kill it mid-way through the rest
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    ws = open_workspace(workspace)
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    with catalog.session() as s:
        items = s.scalars(select(Item)).all()
        assert 0 < len(items) < N and len(items) % BATCH == 0  # whole batches only
        assert s.scalar(select(Collection.name)) == "test-coll"
        assert len(s.scalars(select(Consent)).all()) == 1
        for it in items:  # every catalog row has its object, which decrypts and verifies
            assert store.get(it.content_hash) == (folder / f"{it.external_id}.wav").read_bytes()
    done = len(items)
    assert logged_imports(env) == sorted(it.external_id for it in items)  # every committed batch has its event

    rerun = subprocess.run([sys.executable, "-m", "hearthkit.cli.main", "data", "import", str(folder),
                            "--batch-size", str(BATCH)], capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N - done} imported, {done} already present, 0 skipped" in rerun.stdout
    with catalog.session() as s:
        items = s.scalars(select(Item)).all()
        assert sorted(i.external_id for i in items) == [f"utt{i:03d}" for i in range(N)]
        assert len(s.scalars(select(Consent)).all()) == 1
        assert all(store.is_sealed(i.content_hash) for i in items)
    assert logged_imports(env) == [f"utt{i:03d}" for i in range(N)]  # and the rerun's batches add the rest
    assert not [p for p in ws.store_dir.rglob(".tmp-*")]  # the killed writer's temp files are swept
    assert len(store.keys.records()) == 1  # one data key for the collection, before and after the kill


def logged_imports(env: dict) -> list[str]:
    """The items `hearth audit log --kind import` says were imported, each batch's event listing its items."""
    out = subprocess.run([sys.executable, "-m", "hearthkit.cli.main", "audit", "log", "--kind", "import"],
                         capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    events = [json.loads(line.split(": ", 1)[1]) for line in out.splitlines() if " import " in line]
    assert sum(e["imported"] for e in events) == sum(len(e["items"]) for e in events)
    return sorted(i for e in events for i in e["items"])

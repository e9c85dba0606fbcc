"""Serving through the web app against calling the library in-process, and page render times on a large catalog.

1. A demo-sized speech model (configs/demo-asr.yaml's architecture, few training steps: speed, not accuracy) is
   served by a real `hearth serve` on 127.0.0.1. For 1, 4 and 8 concurrent clients, each sends --requests
   transcriptions (POST /api/v1/transcribe?wait=true with an API token) of the same recording: p50/p95 latency and
   throughput, against the same library function (`transcribe.long.transcribe_file`) called in-process by as many
   threads in the same run. After the load run the `serve` audit events must equal the successful responses.
2. A 100,000-item synthetic catalog (rows bulk-inserted): p95 render time of a collection page and an item search,
   against the same pages over a 100-item catalog served the same way in the same run.

Bounded loops against 127.0.0.1 only. Prints one JSON line.
Example: python bench/web_serving.py --requests 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
HEARTH = [sys.executable, "-m", "hearthkit.cli.main"]
COMMUNITY = "Te Hapori Tauira (demo community)"


def hearth(*args: str, ws: Path) -> str:
    env = dict(os.environ, HEARTH_WORKSPACE=str(ws), COLUMNS="200")
    proc = subprocess.run([*HEARTH, *args], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"hearth {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def pct(xs: list[float], q: float) -> float:
    """The Q-quantile (0..1) of XS, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`hearth serve` over a workspace, on a free loopback port, stopped on exit."""

    def __init__(self, ws: Path):
        self.port = free_port()
        env = dict(os.environ, HEARTH_WORKSPACE=str(ws), HEARTH_WEB_RATE="0", HEARTH_WEB_JOB_THREADS="8")
        self.log = (ws.parent / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen([*HEARTH, "serve", "--port", str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                httpx.get(f"{self.base}/login", timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise SystemExit((ws.parent / f"serve-{self.port}.log").read_text()) from None
                time.sleep(0.1)
        raise SystemExit("hearth serve did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def build_speech_workspace(tmp: Path, steps: int) -> tuple[Path, Path]:
    """A workspace with a demo-sized asr model trained for STEPS steps; returns (workspace, one recording)."""
    from hearthkit.demo.speech import make_speech_archive

    archive = tmp / "archive"
    make_speech_archive(archive, n_sentences=12, n_voices=4, secret=0)
    ws = tmp / "ws"
    hearth("init", str(ws), ws=ws)
    hearth("data", "import", str(archive), ws=ws)
    hearth("train", str(ROOT / "configs" / "demo-asr.yaml"), "--set", f"train.steps={steps}",
           "--set", f"train.checkpoint_every={steps}", "--set", "launch.nproc=1", "--no-eval", ws=ws)
    return ws, sorted(archive.rglob("*.wav"))[0]


def bench_user(ws: Path) -> str:
    """A member of the model's community with an API token allowed to read and transcribe."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.governance import identity
    from hearthkit.governance.stewardship import add_person
    from hearthkit.workspace import current_os_user, open_workspace

    cat = open_workspace_catalog(open_workspace(ws))
    add_person(cat, "bench-member", COMMUNITY, "member", owner=current_os_user())
    _, token = identity.create_token(cat, "bench-member", "bench", ["read", "transcribe"])
    cat.close()
    return token


def serve_events(ws: Path) -> int:
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.governance import audit
    from hearthkit.workspace import open_workspace

    cat = open_workspace_catalog(open_workspace(ws))
    n = len([e for e in audit.events(cat, "serve") if e["data"].get("action") == "transcribe"])
    cat.close()
    return n


def load(fn, clients: int, per_client: int) -> dict:
    """CLIENTS threads each calling FN PER_CLIENT times: latencies, wall time, successes."""
    lat: list[float] = []
    ok = [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            good = fn()
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                ok[0] += int(good)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    return {"p50_s": round(pct(lat, 0.5), 4), "p95_s": round(pct(lat, 0.95), 4),
            "throughput_per_s": round(len(lat) / wall, 3), "requests": len(lat), "ok": ok[0]}


def transcribe_bench(ws: Path, audio: Path, levels: list[int], per_client: int) -> dict:
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.catalog.models import Model
    from hearthkit.transcribe.long import load_model, transcribe_file
    from hearthkit.workspace import open_workspace

    cat = open_workspace_catalog(open_workspace(ws))
    with cat.session() as s:
        folder = Path(s.scalar(select(Model.path).where(Model.name == "demo-asr")))
    cat.close()
    lm = load_model(folder)
    token = bench_user(ws)
    data = audio.read_bytes()
    before = serve_events(ws)
    out: dict = {"levels": {}}
    successes = 0
    with Server(ws) as srv:
        local = threading.local()

        def http() -> bool:
            if not hasattr(local, "c"):
                local.c = httpx.Client(base_url=srv.base, timeout=300,
                                       headers={"Authorization": f"Bearer {token}"})
            r = local.c.post("/api/v1/transcribe?wait=true", data={"model": "demo-asr"},
                             files={"recording": ("r.wav", data, "audio/wav")})
            return r.status_code == 200 and r.json()["status"] == "done"

        def inproc() -> bool:
            return bool(transcribe_file(lm, audio) is not None)

        http()  # warm: the server loads the model once (its cache), as the in-process side already did
        inproc()
        successes += 1
        for c in levels:
            base = load(inproc, c, per_client)
            web = load(http, c, per_client)
            successes += web["ok"]
            out["levels"][c] = {"web": web, "in_process": base,
                                "throughput_ratio": round(web["throughput_per_s"] / base["throughput_per_s"], 3),
                                "p50_ratio": round(web["p50_s"] / base["p50_s"], 3)}
    events = serve_events(ws) - before
    print(f"successful transcribe responses: {successes}; serve audit events: {events}", file=sys.stderr)
    assert events == successes, f"{events} serve events for {successes} successful responses"
    out.update(successful_responses=successes, serve_events=events,
               audio_s=round(__import__("soundfile").info(str(audio)).duration, 2))
    return out


def catalog_workspace(tmp: Path, n_items: int) -> tuple[Path, int, str]:
    """A workspace whose catalog has one open collection of N_ITEMS rows (bulk insert); (ws, collection id, user)."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.catalog.models import Collection, Item
    from hearthkit.governance import identity
    from hearthkit.governance.stewardship import add_person
    from hearthkit.workspace import current_os_user, init_workspace, open_workspace

    ws = init_workspace(tmp / f"cat{n_items}").root
    cat = open_workspace_catalog(open_workspace(ws))
    now = datetime.now(UTC)
    words = ["kōrero", "waiata", "karakia", "pūrākau", "whakapapa", "mihi", "haka", "moteatea"]
    with cat.engine.begin() as c:
        c.execute(insert(Collection), [{"id": 1, "name": "big", "community": "C", "restricted": False,
                                        "created_at": now, "access": "community"}])
        for lo in range(0, n_items, 50_000):
            c.execute(insert(Item), [{"collection_id": 1, "external_id": f"u{i:07d}", "kind": "text",
                                      "content_hash": f"{i:064x}", "size_bytes": 1, "speaker": f"s{i % 500}",
                                      "text": f"{words[i % 8]} {words[(i // 8) % 8]} number {i}", "meta": {},
                                      "imported_at": now, "sharing": "all"}
                                     for i in range(lo, min(n_items, lo + 50_000))])
    add_person(cat, "reader", "C", "member", owner=current_os_user())
    _, token = identity.create_token(cat, "reader", "bench", ["read"])
    cat.close()
    return ws, 1, token


def pages_bench(tmp: Path, n_items: int, repeats: int) -> dict:
    out = {}
    for n in (100, n_items):
        ws, cid, token = catalog_workspace(tmp, n)
        with Server(ws) as srv, httpx.Client(base_url=srv.base, timeout=120,
                                             headers={"Authorization": f"Bearer {token}"}) as c:
            # The HTML pages themselves (a bearer token is accepted by pages as by the API).
            for path in (f"/collections/{cid}", "/search?q=waiata"):
                r = c.get(path)
                assert r.status_code == 200 and "<html" in r.text, (path, r.status_code, r.text[:200])
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200
                out.setdefault(path.split("?")[0].replace(f"/{cid}", "/{id}"), {})[n] = {
                    "p95_s": round(pct(times, 0.95), 4), "p50_s": round(pct(times, 0.5), 4)}
    for v in out.values():
        v["ratio_p95"] = round(v[n_items]["p95_s"] / v[100]["p95_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=6, help="Transcriptions per client at each level.")
    ap.add_argument("--levels", default="1,4,8", help="Concurrent clients, comma-separated.")
    ap.add_argument("--steps", type=int, default=10, help="Training steps of the demo-sized model.")
    ap.add_argument("--items", type=int, default=100_000, help="Items in the large synthetic catalog.")
    ap.add_argument("--page-repeats", type=int, default=40, help="Timed requests per page.")
    ap.add_argument("--audio-repeat", type=int, default=1, help="Recording = the demo sentence N times over (a longer "
                    "recording shows the fixed per-request cost shrinking against inference).")
    ap.add_argument("--skip-pages", action="store_true", help="Only the transcribe endpoint.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary workspaces.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-web-"))
    try:
        ws, audio = build_speech_workspace(tmp / "speech", args.steps)
        if args.audio_repeat > 1:
            import numpy as np
            import soundfile as sf

            wav, sr = sf.read(str(audio), dtype="float32")
            audio = tmp / "long.wav"
            sf.write(str(audio), np.concatenate([wav] * args.audio_repeat), sr)
        result = {"bench": "web_serving", "date": datetime.now(UTC).date().isoformat(),
                  "threads": __import__("torch").get_num_threads(),
                  "transcribe": transcribe_bench(ws, audio, [int(x) for x in args.levels.split(",")], args.requests)}
        if not args.skip_pages:
            result["pages"] = pages_bench(tmp / "pages", args.items, args.page_repeats)
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

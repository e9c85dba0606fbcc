"""Use a model: transcribe an uploaded recording (a job, polled), translate text, monitor two uploaded scenes.

Every use passes `lineage.serving.authorize_use` first and is recorded by `record_use` after it succeeded: one
`serve` audit event per successful use, none for a refused or failed one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import UploadFile

from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError
from hearthkit.governance.vocabulary import Purpose
from hearthkit.lineage import graph as g
from hearthkit.web.deps import Actor, csrf_checked, render, require_scope
from hearthkit.web.jobs import Job, Jobs
from hearthkit.web.modelcache import ModelCache
from hearthkit.web.ratelimit import RateLimiter

router = APIRouter()
MAX_UPLOAD = int(os.environ.get("HEARTH_WEB_MAX_UPLOAD_MB", "200")) * 1024 * 1024
MAX_TEXT = 20_000  # characters of text to translate in one request
AUDIO_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac", "audio/x-flac", "audio/ogg",
               "audio/mpeg", "audio/mp3", "application/octet-stream"}
TIFF_TYPES = {"image/tiff", "image/tif", "image/geotiff", "application/octet-stream"}
GEOJSON_TYPES = {"application/geo+json", "application/json", "application/octet-stream", "text/plain"}
RECIPE_OF = {"transcribe": "asr", "translate": "mt", "monitor": "change"}
# Serving events are appended one at a time in this worker: on SQLite two threads would read the same chain head
# and the second insert would fail on the unique prev_hash (another process can still race us: we append again).
_AUDIT = threading.Lock()


def _audited(fn, *args, **kwargs):
    """FN (authorize_use or record_use) under the worker's audit lock, again if another process moved the head."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            with _AUDIT:
                return fn(*args, **kwargs)
        except (IntegrityError, OperationalError):  # rolled back whole: nothing was recorded; try once more
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def serving_state(app) -> tuple[Jobs, ModelCache, RateLimiter]:
    """This worker's jobs, model cache and rate limiter, made on first use."""
    st = app.state
    if not hasattr(st, "jobs"):
        st.jobs = Jobs(workers=int(os.environ.get("HEARTH_WEB_JOB_THREADS", "4")))
    if not hasattr(st, "models"):
        st.models = ModelCache(size=int(os.environ.get("HEARTH_WEB_MODEL_CACHE", "4")))
    if not hasattr(st, "limits"):
        st.limits = RateLimiter()
    return st.jobs, st.models, st.limits


def usable_models(request: Request, who: Actor) -> dict[str, list[str]]:
    """Per action, the active models of its recipe that WHO may see (the guard still decides each use)."""
    out: dict[str, list[str]] = {a: [] for a in RECIPE_OF}
    with request.app.state.catalog.session() as s:
        for m in g.visible_models(s, who.roles, who.protocols):
            for action, recipe in RECIPE_OF.items():
                if m.recipe == recipe and m.status == "active":
                    out[action].append(m.name)
    return out


def _authorize(request: Request, who: Actor, model: str, action: str, purpose: str) -> Path:
    """The model's folder if WHO may use it for PURPOSE; a model WHO may not see is 404, a refused use 403."""
    from hearthkit.lineage.serving import authorize_use

    if purpose not in {p.value for p in Purpose}:
        raise HTTPException(400, f"purpose {purpose[:40]!r}: choose one of {', '.join(p.value for p in Purpose)}")
    cat = request.app.state.catalog
    with cat.session() as s:
        m = s.scalar(select(Model).where(Model.name == model))
        if m is None or not g.may_see(s, m, who.roles, who.protocols):
            raise HTTPException(404, "model: no such model (or you may not see it)")
        if m.recipe != RECIPE_OF[action]:
            raise HTTPException(400, f"model: {model} is a {m.recipe} model; {action} needs a {RECIPE_OF[action]} "
                                     "model")
    try:
        row = _audited(authorize_use, cat, model, action, who.name, purpose)
    except HearthError as exc:
        raise HTTPException(403, str(exc)) from None
    return Path(row.path)


async def _save_upload(upload: UploadFile | None, field: str, types: set[str], folder: Path) -> Path:
    """Write UPLOAD into FOLDER, refusing a missing file (400), a wrong type (415) or one over the limit (413)."""
    if upload is None or not isinstance(upload, UploadFile) or not upload.filename:
        raise HTTPException(400, f"{field}: choose a file to upload")
    ctype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if ctype not in types:
        raise HTTPException(415, f"{field}: files of type {ctype} are not accepted here")
    suffix = Path(upload.filename).suffix.lower()[:8] if Path(upload.filename).suffix.isascii() else ""
    dest = folder / f"{field}{''.join(ch for ch in suffix if ch.isalnum() or ch == '.')}"
    size = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise HTTPException(413, f"{field}: the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB")
            out.write(chunk)
    if size == 0:
        raise HTTPException(400, f"{field}: the file is empty")
    return dest


def _check_length(request: Request, files: int) -> None:
    """Refuse (413) a body announced larger than FILES uploads at the limit, before any of it is read."""
    n = request.headers.get("content-length", "")
    if n.isdigit() and int(n) > files * MAX_UPLOAD + (1 << 20):
        raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD // (1024 * 1024)} MB per file")


def _check_audio(path: Path) -> float:
    """Duration in seconds of a readable recording, else one clear 400."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - any decoder complaint means the same thing to the person uploading
        raise HTTPException(400, "recording: not a readable audio file (WAV, FLAC, OGG or MP3); check the file "
                                 "and upload it again") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise HTTPException(400, "recording: the audio file holds no sound")
    return info.frames / info.samplerate


def _load_asr(folder: Path):
    from hearthkit.transcribe.long import load_model

    return load_model(folder)


def start_transcription(request: Request, who: Actor, model: str, purpose: str, audio: Path, tmp: Path) -> Job:
    """Transcribe AUDIO with MODEL in the worker's thread pool; the job holds segments, VTT and ELAN text."""
    jobs, cache, _ = serving_state(request.app)
    folder = _authorize(request, who, model, "transcribe", purpose)
    duration = _check_audio(audio)
    catalog = request.app.state.catalog

    def work(job: Job) -> dict:
        from hearthkit.lineage.serving import record_use
        from hearthkit.transcribe.formats import to_eaf, to_vtt
        from hearthkit.transcribe.long import transcribe_file

        try:
            job.stage, job.total = "loading the model", duration
            lm = cache.get(model, folder, _load_asr)

            def progress(what: str, done: float, total: float) -> None:
                job.stage, job.done, job.total = what, done, total

            segments = transcribe_file(lm, audio, progress=progress)
            job.files["vtt"] = (to_vtt(segments).encode("utf-8"), "text/vtt; charset=utf-8")
            job.files["eaf"] = (to_eaf(segments, Path("recording" + audio.suffix)).encode("utf-8"),
                                "application/xml; charset=utf-8")
            _audited(record_use, catalog, model, "transcribe", who.name, purpose, seconds=round(duration, 2),
                     segments=len(segments))
            job.stage, job.done = "done", duration
            return {"model": model, "seconds": round(duration, 2),
                    "segments": [{"start": sg.start, "end": sg.end, "text": sg.text} for sg in segments]}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the upload never outlives its job

    return jobs.start(who.person_id, "transcribe", work)


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hearth-upload-"))  # 0700: only this server's account reads it


async def _transcribe(request: Request, who: Actor) -> Job:
    _, _, limits = serving_state(request.app)
    limits.check(who.name, "transcribe")
    _check_length(request, 1)
    form = await request.form()
    tmp = _tmpdir()
    try:
        audio = await _save_upload(form.get("recording"), "recording", AUDIO_TYPES, tmp)
        return start_transcription(request, who, str(form.get("model", "")),
                                   str(form.get("purpose", "community_use")), audio, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _job(request: Request, who: Actor, job_id: str) -> Job:
    jobs, _, _ = serving_state(request.app)
    job = jobs.get(job_id, who.person_id)
    if job is None:
        raise HTTPException(404, "no such job (jobs are kept for an hour, in the server process that ran them)")
    return job


def translate(request: Request, who: Actor, model: str, to: str, text: str, purpose: str) -> dict:
    """Translate TEXT (one sentence a line) into TO; records one serve event."""
    from hearthkit.lineage.serving import record_use
    from hearthkit.recipes.load import load_model_dir

    _, cache, limits = serving_state(request.app)
    limits.check(who.name, "translate")
    lines = [x.strip() for x in text.splitlines()]
    if not any(lines):
        raise HTTPException(400, "text: write at least one sentence to translate")
    if len(text) > MAX_TEXT:
        raise HTTPException(413, f"text: at most {MAX_TEXT} characters in one request")
    if not to.strip() or len(to) > 20:
        raise HTTPException(400, "to: give the target language code, e.g. nah")
    folder = _authorize(request, who, model, "translate", purpose)
    recipe, cfg, prep, net = cache.get(model, folder, lambda f: load_model_dir(f, "mt"))
    out = iter(recipe.translate(net, cfg, prep, [x for x in lines if x], to.strip()))
    result = [next(out) if x else "" for x in lines]
    _audited(record_use, request.app.state.catalog, model, "translate", who.name, purpose,
             lines=sum(1 for x in lines if x))
    return {"model": model, "to": to.strip(), "lines": result}


async def _monitor(request: Request, who: Actor) -> Job:
    _, _, limits = serving_state(request.app)
    limits.check(who.name, "monitor")
    _check_length(request, 3)
    form = await request.form()
    model, purpose = str(form.get("model", "")), str(form.get("purpose", "community_use"))
    tmp = _tmpdir()
    try:
        before = await _save_upload(form.get("before"), "before", TIFF_TYPES, tmp)
        after = await _save_upload(form.get("after"), "after", TIFF_TYPES, tmp)
        terr = form.get("territory")
        territory = (await _save_upload(terr, "territory", GEOJSON_TYPES, tmp)
                     if isinstance(terr, UploadFile) and terr.filename else None)
        return start_monitor(request, who, model, purpose, before, after, territory, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def start_monitor(request: Request, who: Actor, model: str, purpose: str, before: Path, after: Path,
                  territory: Path | None, tmp: Path) -> Job:
    """Detect change between two uploaded scenes: the map as PNG, hectares per territory."""
    jobs, cache, _ = serving_state(request.app)
    ws, catalog = request.app.state.ws, request.app.state.catalog
    from hearthkit.data.geo import Scene
    from hearthkit.monitor.inputs import load_model, open_date

    lm = cache.get(model, _authorize(request, who, model, "monitor", purpose),
                   lambda _f: load_model(ws, catalog, model, purpose, who.name))
    opened: list = []
    try:
        opened.append(open_date(before, lm.prep["bands"]))
        opened.append(open_date(after, lm.prep["bands"]))
    except HearthError as exc:  # a corrupt or unreadable scene: one line, without the server's paths
        _close(opened)
        raise HTTPException(400, str(exc).replace(str(tmp) + "/", "")) from None
    scene = Scene("upload", *opened)

    def work(job: Job) -> dict:
        from hearthkit.lineage.serving import record_use
        from hearthkit.monitor.run import run_monitor

        try:
            def progress(i: int, n: int) -> None:
                job.stage, job.done, job.total = "detecting change", i, n

            summary = run_monitor(lm, scene, tmp / "out", territory, progress=progress)
            job.files["map"] = ((tmp / "out" / "map.png").read_bytes(), "image/png")
            _audited(record_use, catalog, model, "monitor", who.name, purpose, tiles=summary["tiles"],
                     pixels=summary["pixels"])
            return {"model": model, "territories": summary["territories"], "pixels": summary["pixels"],
                    "restrictions": summary["restrictions"], "warnings": summary["warnings"],
                    "calibration": summary["calibration"], "cell": summary["cell"]}
        finally:
            _close(opened)
            shutil.rmtree(tmp, ignore_errors=True)

    return jobs.start(who.person_id, "monitor", work)


def _close(dates: list) -> None:
    """Close the raster datasets of the opened dates (layers are datasets or (dataset, band) pairs)."""
    for layers in dates:
        for layer in layers:
            (layer[0] if isinstance(layer, tuple) else layer).close()


async def _wait(job: Job) -> None:
    if job.future is not None:
        await asyncio.wrap_future(job.future)


# --- pages ---

@router.get("/use", include_in_schema=False)
def use_page(request: Request, who: Actor = Depends(require_scope("read"))):
    return render(request, "use/index.html", {"models": usable_models(request, who),
                                              "purposes": [p.value for p in Purpose],
                                              "max_mb": MAX_UPLOAD // (1024 * 1024)})


@router.post("/use/transcribe", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def transcribe_form(request: Request, who: Actor = Depends(require_scope("transcribe"))):
    job = await _transcribe(request, who)
    return RedirectResponse(f"/use/jobs/{job.id}", status_code=303)


@router.post("/use/translate", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def translate_form(request: Request, who: Actor = Depends(require_scope("translate"))):
    form = await request.form()
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(translate, request, who, str(form.get("model", "")), str(form.get("to", "")),
                                     str(form.get("text", "")), str(form.get("purpose", "community_use")))
    return render(request, "use/translated.html", result)


@router.post("/use/monitor", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def monitor_form(request: Request, who: Actor = Depends(require_scope("monitor"))):
    job = await _monitor(request, who)
    return RedirectResponse(f"/use/jobs/{job.id}", status_code=303)


@router.get("/use/jobs/{job_id}", include_in_schema=False)
def job_page(request: Request, job_id: str, who: Actor = Depends(require_scope("read"))):
    return render(request, "use/job.html", {"job": _job(request, who, job_id).view()})


@router.get("/use/jobs/{job_id}/{name}", include_in_schema=False)
def job_file(request: Request, job_id: str, name: str, who: Actor = Depends(require_scope("read"))):
    job = _job(request, who, job_id)
    files = {"transcript.vtt": "vtt", "transcript.eaf": "eaf", "map.png": "map"}
    if name not in files or files[name] not in job.files:
        raise HTTPException(404, "no such file for this job")
    data, media = job.files[files[name]]
    disposition = "inline" if name.endswith(".png") else f'attachment; filename="{name}"'
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})


# --- JSON API ---

@router.get("/api/v1/use")
def use_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return {"models": usable_models(request, who), "purposes": [p.value for p in Purpose],
            "max_upload_mb": MAX_UPLOAD // (1024 * 1024)}


@router.post("/api/v1/transcribe", status_code=202, dependencies=[Depends(csrf_checked)])
async def transcribe_api(request: Request, wait: bool = False, who: Actor = Depends(require_scope("transcribe"))):
    """Multipart `recording`, `model`, `purpose`: a job id to poll, or with ?wait=true the transcript itself."""
    job = await _transcribe(request, who)
    if not wait:
        return {"job": job.id, **job.view()}
    await _wait(job)
    from fastapi.responses import JSONResponse

    return JSONResponse(job.view(), status_code=200 if job.status == "done" else 422)


@router.post("/api/v1/translate", dependencies=[Depends(csrf_checked)])
async def translate_api(request: Request, who: Actor = Depends(require_scope("translate"))) -> dict:
    """JSON {model, to, text, purpose}: the translation, one line per input line."""
    from starlette.concurrency import run_in_threadpool

    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "send a JSON object {model, to, text, purpose}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "send a JSON object {model, to, text, purpose}")
    return await run_in_threadpool(translate, request, who, str(body.get("model", "")), str(body.get("to", "")),
                                   str(body.get("text", "")), str(body.get("purpose", "community_use")))


@router.post("/api/v1/monitor", status_code=202, dependencies=[Depends(csrf_checked)])
async def monitor_api(request: Request, wait: bool = False, who: Actor = Depends(require_scope("monitor"))):
    """Multipart `before`, `after` (GeoTIFF stacks), optional `territory` (GeoJSON), `model`, `purpose`."""
    job = await _monitor(request, who)
    if not wait:
        return {"job": job.id, **job.view()}
    await _wait(job)
    from fastapi.responses import JSONResponse

    return JSONResponse(job.view(), status_code=200 if job.status == "done" else 422)


@router.get("/api/v1/jobs/{job_id}")
def job_api(request: Request, job_id: str, who: Actor = Depends(require_scope("read"))) -> dict:
    return _job(request, who, job_id).view()


@router.get("/api/v1/jobs/{job_id}/{name}")
def job_file_api(request: Request, job_id: str, name: str, who: Actor = Depends(require_scope("read"))):
    return job_file(request, job_id, name, who)

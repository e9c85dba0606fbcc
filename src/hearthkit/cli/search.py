"""`hearth search-index` and `hearth search`: spoken-term search over a collection's recordings."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hearthkit.cli.common import (
    JsonOpt,
    PurposeOpt,
    RequesterOpt,
    WorkspaceOpt,
    console,
    open_catalog,
    print_json,
    user_errors,
)
from hearthkit.cli.common import table as make_table

INDEX_EXAMPLE = "\n\nExample: hearth search-index mboshi --asr mboshi-asr --index mboshi-kws --purpose research"
SEARCH_EXAMPLE = "\n\nExample: hearth search 'ngá' --index mboshi-kws --requester mere"


@user_errors
def search_index(
    collection: Annotated[str, typer.Argument(help="Collection to index (see `hearth data ls`).")],
    asr: Annotated[str, typer.Option(help="Character-unit asr model (name or models/NAME folder).")],
    index: Annotated[str, typer.Option(help="Name of the index (WORKSPACE/indexes/NAME).")],
    beam: Annotated[int | None, typer.Option(help="Beam of the stored 1-best (default: the model's; "
                                                  "1 = greedy).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads (more only helps on an idle machine).")] = 1,
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Index a collection for spoken-term search: a governed run stores each permitted item's CTC posteriors."""
    import torch

    from hearthkit.errors import HearthError
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.recipes.kws.index import build_index

    torch.set_num_threads(threads)
    ws, catalog = open_catalog(workspace)
    if not requester:
        raise HearthError("--requester is required: an index is built for someone, under the policy, like training")
    served = resolve_use(catalog, asr, "transcribe", requester, purpose)  # status, inherited labels, protocols
    with Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("items", total=None)
        doc = build_index(catalog, ws, index, collection, served, purpose, requester,
                          beam=beam, progress=lambda d, t: bar.update(task, completed=d, total=t))
    seconds = sum(i["frames"] for i in doc["items"]) * doc["frame_s"]
    record_use(catalog, served.name, "transcribe", requester, purpose, seconds=round(seconds, 3),
               items=len(doc["items"]), index=index)  # counts only: never the words
    console.print(f"index {index}: {len(doc['items'])} items of {collection} ({seconds / 3600:.2f} h), "
                  f"{'sealed with the collection key' if doc['sealed'] else 'open collection'}", highlight=False)


@user_errors
def search(
    term: Annotated[str, typer.Argument(help="Word or phrase, spelt as the transcripts spell it.")],
    index: Annotated[str, typer.Option(help="Index name (see `hearth search-index`) or folder.")],
    limit: Annotated[int, typer.Option(min=1, help="Most hits to show.")] = 20,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Hide hits whose probability of holding the "
                                                                     "term is below this (0-1).")] = 0.05,
    requester: RequesterOpt = None,
    as_json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Where TERM was probably said: items and times ranked by a posterior score, only in items you may access.

    score: the calibrated probability that the item holds TERM (keyword path confidence, the n-best's posterior,
    the term's length); detect: yes where that probability passes the term's own threshold (KST: worth reporting
    under NIST's term-weighted costs, given how often the term seems to occur in what you may search)."""
    from hearthkit.governance.search import spoken_search, viewer_for

    ws, catalog = open_catalog(workspace)
    # Spelling checked first, the access filter before any posterior is read, then audited (never the term).
    hits = spoken_search(ws, catalog, index, term, viewer_for(catalog, requester), requester, limit=limit,
                         floor=min_score)
    if as_json:
        print_json(hits)
        return
    if not hits:
        console.print(f"no hits for {term!r}", highlight=False)
        return
    t = make_table("score", "detect", "item", "from (s)", "to (s)", "recording")
    for h in hits:
        t.add_row(f"{h['score']:.3f}", "yes" if h["kst"] >= 0.5 else "", h["item"], f"{h['start_s']:.2f}",
                  f"{h['end_s']:.2f}",
                  f"{h['recording']} @ {h['recording_start_s']:.2f} s" if h["recording"] else "")
    console.print(t)

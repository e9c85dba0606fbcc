"""Spoken-term search on Mboshi dev: posterior (CTC keyword) search vs plain text search over the same model's 1-best.

Protocol, fixed before any result was seen (committed with this script):
- Queries: the dev reference transcripts (`.mb`, normalised as the asr model writes: lower-case NFC, punctuation
  removed), split at spaces. Candidates are the distinct words of at least 4 characters that occur in at least 2 dev
  utterances, sorted by code point. Take every 5th candidate starting with the first, at most 100; if that gives
  fewer than 100, take every (N // 100)-th instead (N candidates), first 100.
- A query is out of training vocabulary (OOV) when no training transcript (`train/*.mb`, same normalisation) has it
  as a word. OOV queries are reported apart.
- Truth, at the utterance level: an utterance holds a query when its normalised reference has it as a whole word.
- Posterior search: each (query, utterance) gets the best hit score of `recipes/kws/score.py` in that utterance
  (0 where none). Text search: 1 where the stored 1-best (the model's configured decoder) has the query as a whole
  word, else 0.
- Metrics: utterance-level recall and precision (posterior search at score >= 0.5 and at the MTWV threshold), and
  term-weighted value TWV(t) = 1 - mean over queries of [P_miss(q, t) + beta * P_FA(q, t)] with beta = 999.9,
  P_FA = false alarms / (T_speech - N_true(q)) where T_speech is the dev audio in seconds (NIST's trials per second;
  our detections are per utterance, so this is an utterance-level TWV); MTWV = max over thresholds t. Text search
  has a single operating point: its TWV. Same queries, same model, same utterances for both.

Usage: python bench/kws_mboshi.py --ws WS --model mboshi-asr-kws --data ../shared/data/mboshi [--index NAME]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hearthkit.recipes.asr.tokenizer import CharTokenizer

BETA = 999.9


def words_of(text: str) -> list[str]:
    return CharTokenizer.normalise(text).split()


def choose_queries(dev_refs: dict[str, str]) -> list[str]:
    """The protocol's query rule (see the module docstring)."""
    freq: dict[str, int] = {}
    for t in dev_refs.values():
        for w in set(words_of(t)):
            freq[w] = freq.get(w, 0) + 1
    cands = sorted(w for w, n in freq.items() if len(w) >= 4 and n >= 2)
    picked = cands[::5][:100]
    if len(picked) < 100:
        picked = cands[::max(1, len(cands) // 100)][:100]
    return picked


def twv(scores: np.ndarray, truth: np.ndarray, t: float, speech_s: float) -> tuple[float, float, float]:
    """(TWV, recall, precision) at threshold T; SCORES and TRUTH are (queries, utterances)."""
    det = scores >= t
    n_true = truth.sum(1)
    hit = (det & truth).sum(1)
    fa = (det & ~truth).sum(1)
    p_miss = 1 - hit / n_true
    p_fa = fa / (speech_s - n_true)
    value = 1 - float(np.mean(p_miss + BETA * p_fa))
    recall = float(hit.sum() / n_true.sum())
    precision = float(hit.sum() / max(det.sum(), 1))
    return value, recall, precision


def mtwv(scores: np.ndarray, truth: np.ndarray, speech_s: float) -> tuple[float, float, float, float]:
    """(MTWV, its threshold, recall and precision there)."""
    best = (-np.inf, 1.0, 0.0, 0.0)
    pos = scores[scores > 0]
    grid = np.quantile(pos, np.linspace(0, 1, 400)) if len(pos) else np.zeros(0)
    for t in np.unique(np.concatenate([grid, [1.01]])):
        v, r, p = twv(scores, truth, float(t), speech_s)
        if v > best[0]:
            best = (v, float(t), r, p)
    return best


def report(name: str, post: np.ndarray, text: np.ndarray, truth: np.ndarray, speech_s: float) -> dict:
    m, thr, r_m, p_m = mtwv(post, truth, speech_s)
    _, r5, p5 = twv(post, truth, 0.5, speech_s)
    tv, tr, tp = twv(text, truth, 0.5, speech_s)
    # Added after the first run (reported as such): posterior search at the recall text search reaches, to compare
    # precision at one recall (the first run's MTWV was 0 for both, i.e. "detect nothing" was the best threshold).
    grid = np.unique(post[post > 0])  # recall falls as the threshold rises: the highest one reaching text's recall
    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if twv(post, truth, float(grid[mid]), speech_s)[1] >= tr else (lo, mid - 1)
    matched = float(grid[lo]) if len(grid) else 1.01
    mv, mr, mp = twv(post, truth, matched, speech_s)
    out = {"matched_recall": {"threshold": matched, "twv": mv, "recall": mr, "precision": mp}}
    out.update(queries=name, n=int(len(truth)))
    return {**out, "posterior": {"mtwv": m, "threshold": thr, "recall_at_mtwv": r_m,
                                                                 "precision_at_mtwv": p_m, "recall_at_0.5": r5,
                                                                 "precision_at_0.5": p5},
            "text_1best": {"twv": tv, "recall": tr, "precision": tp}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--index", default="mboshi-dev-kws")
    ap.add_argument("--requester", default="hearthkit-benchmark")
    ap.add_argument("--out", type=Path, default=Path("bench/results/kws_mboshi.json"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more only helps on an idle machine)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.lineage.serving import resolve_use
    from hearthkit.recipes.kws.index import SpokenIndex, build_index
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    dev_refs = {p.stem: p.read_text(encoding="utf-8") for p in sorted((args.data / "dev").glob("*.mb"))}
    train_words = {w for p in (args.data / "train").glob("*.mb") for w in words_of(p.read_text(encoding="utf-8"))}
    queries = choose_queries(dev_refs)
    oov = [q not in train_words for q in queries]
    print(f"{len(queries)} queries ({sum(oov)} OOV): {' '.join(queries[:10])} …")

    ws = open_workspace(args.ws)
    catalog = open_workspace_catalog(ws)
    folder = ws.root / "indexes" / args.index
    t0 = time.perf_counter()
    if not (folder / "index.json").is_file():
        served = resolve_use(catalog, args.model, "transcribe", args.requester, "research")
        build_index(catalog, ws, args.index, "mboshi", served, "research", args.requester,
                    progress=lambda d, t: print(f"\rindexed {d}/{t}", end="", flush=True), only=set(dev_refs))
        print()
    build_s = time.perf_counter() - t0
    idx = SpokenIndex(folder)
    store = workspace_store(ws)
    # The benchmark scores every item of the index, each permitted by its manifest for this research request; who
    # may see which hits (governance/search.py) is tested in tests/recipes/test_kws.py.
    allowed = {i.item_id for i in idx.items}
    gram, chosen, texts = idx.load(store, allowed)
    utts = [i.external_id for i in chosen]
    speech_s = sum(i.frames for i in chosen) * idx.doc["frame_s"]
    refs = [set(words_of(dev_refs[u])) for u in utts]
    truth = np.array([[q in r for r in refs] for q in queries])
    hyps = [set(t.split()) for t in texts]
    text = np.array([[1.0 if q in h else 0.0 for h in hyps] for q in queries])
    post = np.zeros((len(queries), len(utts)))
    t1 = time.perf_counter()
    for k, q in enumerate(queries):
        for h in gram.search(idx.units_of(q), per_item=1, floor=1e-6):
            post[k, h.item] = max(post[k, h.item], h.score)
    search_s = time.perf_counter() - t1
    oov_m = np.array(oov)
    rows = [report("all", post, text, truth, speech_s)]
    if oov_m.any():
        rows.append(report("OOV", post[oov_m], text[oov_m], truth[oov_m], speech_s))
    if (~oov_m).any():
        rows.append(report("in-vocabulary", post[~oov_m], text[~oov_m], truth[~oov_m], speech_s))
    from hearthkit.evaluate.metrics import bootstrap_ci, score

    recs = [{"reference": " ".join(words_of(dev_refs[u])), "hypothesis": t} for u, t in zip(utts, texts, strict=True)]
    cer = (score(recs, "cer"), *bootstrap_ci(recs, "cer"))
    print(f"1-best CER of the indexed model on these utterances: {cer[0]:.3f} [{cer[1]:.3f}, {cer[2]:.3f}]")
    result = {"model": args.model, "utterances": len(utts), "cer_1best": cer, "speech_s": round(speech_s, 1),
              "queries": queries,
              "oov": [q for q, o in zip(queries, oov, strict=True) if o], "index_build_s": round(build_s, 1),
              "search_s_per_query": round(search_s / len(queries), 4), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out.with_suffix(".npz"), posterior=post, text=text, truth=truth)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    for r in rows:
        p, t = r["posterior"], r["text_1best"]
        print(f"{r['queries']:>14} ({r['n']:3d} q): posterior MTWV {p['mtwv']:.3f} (t={p['threshold']:.3f}; R "
              f"{p['recall_at_mtwv']:.3f} P {p['precision_at_mtwv']:.3f}; at 0.5: R {p['recall_at_0.5']:.3f} P "
              f"{p['precision_at_0.5']:.3f}) | 1-best text TWV {t['twv']:.3f} (R {t['recall']:.3f} P "
              f"{t['precision']:.3f}) | posterior at text's recall: R {r['matched_recall']['recall']:.3f} "
              f"P {r['matched_recall']['precision']:.3f} TWV {r['matched_recall']['twv']:.3f}")
    print(f"{len(utts)} utterances, {speech_s:.0f} s; index build {build_s:.0f} s; "
          f"{search_s / len(queries) * 1000:.1f} ms per query")


if __name__ == "__main__":
    main()

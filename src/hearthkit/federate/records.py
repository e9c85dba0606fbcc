"""The coordinator's lineage of a federated model: per round and site the manifest hash and approval id (never
an item list), the union of restrictions, lapses, refusals and withdrawals reported by the sites; and its card."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

LINEAGE = "lineage.json"


@dataclass
class Lineage:
    """What the coordinator knows of a federated model; written atomically after every round."""

    federation: str
    status: str = "active"  # active | needs-retrain
    status_reason: str | None = None
    contributions: list[dict] = field(default_factory=list)  # round, site, community, manifest, request, ...
    events: list[dict] = field(default_factory=list)  # round, site, event, reason
    rounds: list[dict] = field(default_factory=list)  # round, accepted sites, global digest

    @classmethod
    def load(cls, folder: Path, federation: str) -> Lineage:
        """The lineage in FOLDER, or a new one."""
        path = folder / LINEAGE
        if not path.is_file():
            return cls(federation)
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, folder: Path) -> None:
        """Write atomically (a restarted coordinator resumes from it)."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (LINEAGE + ".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, folder / LINEAGE)

    def event(self, round_: int, site: str, event: str, reason: str) -> None:
        self.events.append({"round": round_, "site": site, "event": event, "reason": reason})

    def flag(self, site: str, flagged: list[dict], round_: int) -> None:
        """Mark SITE's contributions to the rounds it reports withdrawn; the model then needs retraining."""
        for f in flagged:
            for c in self.contributions:
                if c["site"] == site and c["round"] == f["round"] and not c.get("flagged"):
                    c["flagged"] = f["reason"]
                    self.event(round_, site, "withdrawal", f"round {f['round']} contribution: {f['reason']}")
                    self.status = "needs-retrain"
                    self.status_reason = f"{site} reported data of its round {f['round']} contribution withdrawn"

    def restrictions(self) -> list[str]:
        """The union of the restrictions every contribution's manifest carried."""
        return sorted({r for c in self.contributions for r in c["restrictions"]})

    def benefit(self) -> dict[str, dict]:
        """Per community: samples its site drew for accepted updates and worker-hours by device kind."""
        out: dict[str, dict] = {}
        for c in self.contributions:
            b = out.setdefault(c["community"], {"samples": 0, "worker_hours": {}})
            b["samples"] += c["samples"]
            b["worker_hours"][c["device"]] = b["worker_hours"].get(c["device"], 0.0) + c["seconds"] / 3600
        return dict(sorted(out.items()))

    def attribution(self) -> dict[str, list[str]]:
        """Per community, the union of its contributions' attribution."""
        out: dict[str, set[str]] = {}
        for c in self.contributions:
            out.setdefault(c["community"], set()).update(c["attribution"])
        return {k: sorted(v) for k, v in sorted(out.items())}


def card(lineage: Lineage, cfg, eps: float | None) -> str:
    """The federated model's card: participating communities with attribution, per-round manifests, privacy."""
    restr = lineage.restrictions()
    front = ["---", f"model_name: {lineage.federation}", "tags: [hearthkit, federated, asr]",
             f"restrictions: {json.dumps(restr)}", f"status: {lineage.status}", "---", ""]
    lines = [f"# {lineage.federation} (federated)", "",
             f"Trained by federation over {len({c['site'] for c in lineage.contributions})} sites with "
             f"{cfg.strategy.kind}" + (f" (proximal μ = {cfg.strategy.proximal_mu:g})" if cfg.strategy.kind ==
                                        "fedprox" else "") +
             f", {len(lineage.rounds)} rounds of {cfg.local_steps} local steps. No recording or "
             "transcript left any site: each sent only its weights.", "", "## Transport", ""]
    if cfg.insecure:
        lines += ["**Insecure federation** (insecure: true): plain gRPC without TLS and unsigned updates — the "
                  "weights travelled in clear, and a peer knowing a site's name could have sent updates as that site.",
                  ""]
    else:
        lines += ["TLS to the coordinator (checked against the federation's CA); every update was signed with its "
                  "site's Ed25519 key over the weights, manifest hash, round and the round's fresh challenge, and "
                  "verified against the key the coordinator's config lists for that site.", ""]
    if lineage.status != "active":
        lines += [f"**Status: {lineage.status}** — {lineage.status_reason}", ""]
    lines += ["## Restrictions (union of every site's)", ""]
    lines += [f"- {r}" for r in restr] or ["- none"]
    lines += ["", "## Participating communities and attribution", ""]
    for community, attr in lineage.attribution().items():
        lines.append(f"- **{community}**" + (f": {', '.join(attr)}" if attr else ""))
    lines += ["", "## Contributions (per round and site: manifest hash and approval, never an item list)", "",
              "| round | site | community | manifest sha256 | request | samples | flagged |",
              "|---|---|---|---|---|---|---|"]
    for c in lineage.contributions:
        lines.append(f"| {c['round']} | {c['site']} | {c['community']} | {c['manifest']} | {c['request']} | "
                     f"{c['samples']} | {c.get('flagged') or ''} |")
    lines += ["", "## Benefit ledger (per community: samples drawn for the global model, compute at its site)", "",
              "| community | samples | share | worker-hours |", "|---|---|---|---|"]
    total = sum(c["samples"] for c in lineage.contributions) or 1
    for community, b in lineage.benefit().items():
        hours = ", ".join(f"{v:.4f} {k}" for k, v in b["worker_hours"].items())
        lines.append(f"| {community} | {b['samples']} | {b['samples'] / total:.0%} | {hours} |")
    lines += ["", "## Privacy", ""]
    if cfg.privacy.clip is None:
        lines.append("No differential privacy (no clipping, no noise).")
    else:
        lines.append(f"Site-level differential privacy: each site's update clipped to L2 norm {cfg.privacy.clip}, "
                     f"Gaussian noise with multiplier {cfg.privacy.noise_multiplier} added to the aggregate "
                     f"(Flower's server-side fixed clipping); (ε, δ) = ({eps:.3g}, {cfg.privacy.delta:g}) "
                     f"after {len(lineage.rounds)} rounds (opacus RDP accountant, every site every round).")
    if lineage.events:
        lines += ["", "## Events", ""]
        lines += [f"- round {e['round']}, {e['site']}: {e['event']} — {e['reason']}" for e in lineage.events]
    return "\n".join(front + lines) + "\n"

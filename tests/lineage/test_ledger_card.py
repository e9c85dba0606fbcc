"""Every centralised model's card carries the benefit ledger, with the numbers `hearth ledger` computes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.lineage.test_ledger import COMMUNITY


def _card_rows(card: str) -> dict[str, list[str]]:
    """The card's benefit ledger table: community -> its cells."""
    section = card.split("## Benefit ledger", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {r[0]: r[1:] for r in rows[1:]}  # rows[0] is the header


def test_a_centralised_models_card_shows_the_ledger_hearth_ledger_computes(tiny_asr_model):
    from hearthkit.cli.main import app

    tiny = tiny_asr_model[0]
    pristine = tiny.parent / "pristine" / tiny.name  # as trained and published, read only: nothing used it since
    root = pristine if pristine.is_dir() else tiny
    card = (root / "models" / "tiny-asr" / "model_card.md").read_text(encoding="utf-8")
    out = CliRunner().invoke(app, ["ledger", COMMUNITY, "--json"], env={"HEARTH_WORKSPACE": str(root)})
    assert out.exit_code == 0, out.output
    row = next(r for r in json.loads(out.output)["models"] if r["model"] == "tiny-asr")
    assert row["kind"] == "centralised" and row["items"] > 0 and row["reads"] > 0 and row["compute"]
    expected = [str(row["items"]), f"{row['hours']:.3f}", f"{row['share']:.1%}",
                ", ".join(f"{v:.4f} {k}" for k, v in sorted(row["compute"].items())),
                ", ".join(row["slurm_accounts"]) or "–", str(row["uses"]["export"]), str(row["uses"]["serve"])]
    assert _card_rows(card) == {COMMUNITY: expected}
    assert sum(row["compute"].values()) > 0 and row["share"] > 0

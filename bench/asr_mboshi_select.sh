#!/usr/bin/env bash
# Choosing settings for the Mboshi benchmark without looking at dev (the test set), declared before it runs:
#  1. two variants are trained with 8% of the training utterances held out for validation (grouped by sentence,
#     `split.valid_fraction`), `--no-eval`, so dev stays unread:
#       A = configs/mboshi-asr.yaml as it is (run d/e settings);
#       B = stronger regularisation: SpecAugment frequency masks up to 27 bins (from 15), 5 time masks (from 2),
#           dropout 0.15 (from 0.1);
#  2. the variant with the lower validation CER (the config's decoder: beam 8 + character 5-gram) is kept;
#  3. the n-gram's weight is chosen on the same validation items from 0.1, 0.3, 0.5, 0.8;
#  4. the kept variant is evaluated on dev once, with that weight.
# Usage: bash bench/asr_mboshi_select.sh ../shared/data/mboshi [OUT]   (stages and imports like asr_mboshi.sh)
set -euo pipefail
DATA=${1:?usage: bash bench/asr_mboshi_select.sh ../shared/data/mboshi [OUT]}
OUT=${2:-.bench}
source bench/mboshi_import.sh
PREFIX=${PREFIX:-mboshi-sel}
VALID=(--set split.valid_fraction=0.08)
B=(--set model.augment.freq_width=27 --set model.augment.time_masks=5 --set model.dropout=0.15)

for v in A B; do
  extra=()
  [ "$v" = B ] && extra=("${B[@]}")
  start=$(date +%s)
  $HEARTH train configs/mboshi-asr.yaml --no-eval "${VALID[@]}" "${extra[@]}" --set name="$PREFIX-$v"
  echo "variant $v: train wall time $(( $(date +%s) - start )) s"
  $HEARTH eval "$PREFIX-$v" --split valid --by speaker
done

best=$(.venv/bin/python - "$HEARTH_WORKSPACE" "$PREFIX" <<'EOF'
import json, sys
from pathlib import Path
ws, prefix = Path(sys.argv[1]), sys.argv[2]
cer = {}
for v in "AB":
    rows = json.loads((ws / "runs" / f"{prefix}-{v}" / "eval-valid.json").read_text())["rows"]
    cer[v] = next(r["cer"] for r in rows if r["by"] == "overall")
print(min(cer, key=cer.get))
print("validation CER per variant:", cer, file=sys.stderr)
EOF
)
echo "kept variant: $best"
NAME="$PREFIX-$best"
for w in 0.1 0.3 0.5 0.8; do
  $HEARTH eval "$NAME" --split valid --set decode.lm.weight=$w --by speaker | tail -1
  cp "$HEARTH_WORKSPACE/runs/$NAME/eval-valid-set.json" "$HEARTH_WORKSPACE/runs/$NAME/eval-valid-w$w.json"
done
weight=$(.venv/bin/python - "$HEARTH_WORKSPACE/runs/$NAME" <<'EOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
cer = {}
for w in ("0.1", "0.3", "0.5", "0.8"):
    rows = json.loads((run / f"eval-valid-w{w}.json").read_text())["rows"]
    cer[w] = next(r["cer"] for r in rows if r["by"] == "overall")
print(min(cer, key=cer.get))
print("validation CER per n-gram weight:", cer, file=sys.stderr)
EOF
)
echo "kept n-gram weight: $weight"
# The one evaluation on dev.
$HEARTH eval "$NAME" --by speaker --by source --set decode.lm.weight="$weight"

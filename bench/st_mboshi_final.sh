#!/usr/bin/env bash
# Final Mboshi -> French (`.fr`) figures on dev, after bench/st_mboshi_tune.sh chose the cascade's text model on
# items held out of train: (1) the kept text model on dev's own transcripts (the cascade's ceiling), (2) the same
# text model fed by the asr model (the cascade), (3) the end-to-end model: encoder from the asr model, decoder from
# the kept text model (model.decoder_from), (4) the asr model's dev CER. Each re-scored by bench/st_mboshi.py
# (as shipped, detok, detok lower-cased; 95% CIs; per speaker and source).
# The text model was trained with model.cascade_input: transcript and no asr model; (2) attaches the asr model at
# evaluation (`--set init_from=... --set cascade_input=asr`, decoding only: the weights are the same).
# Usage: ASR=mboshi-st-asr-1200 TEXT=tune-A DECODE="--set text.beam=5" E2E_STEPS=150 bash bench/st_mboshi_final.sh [OUT]
set -euo pipefail
OUT=${1:-.bench/st-fr}
HEARTH=.venv/bin/hearth
export HEARTH_WORKSPACE=$OUT/ws
ASR=${ASR:?name of the asr model}
TEXT=${TEXT:?name of the kept text model}
read -r -a DEC <<< "${DECODE:-}"
WS=$(cd "$HEARTH_WORKSPACE" && pwd)
$HEARTH eval "$ASR" --by speaker --by source | tail -4
.venv/bin/python bench/st_mboshi.py "${DEC[@]}" "$TEXT" > "$OUT/final-ceiling.jsonl"
.venv/bin/python bench/st_mboshi.py "${DEC[@]}" --set cascade_input=asr --set "init_from=$WS/models/$ASR" "$TEXT" \
  > "$OUT/final-cascade.jsonl"
if [ "${E2E_STEPS:-0}" -gt 0 ]; then
  start=$(date +%s)
  [ -f "$HEARTH_WORKSPACE/models/mboshi-st-e2e-dec/model.safetensors" ] || nice -n 5 $HEARTH train \
    configs/mboshi-st-e2e.yaml --set name=mboshi-st-e2e-dec --set "model.init_from=$WS/models/$ASR" \
    --set "model.decoder_from=$WS/models/$TEXT" --set train.steps="$E2E_STEPS" --set train.checkpoint_every=50 \
    --no-eval
  echo "e2e training wall time: $(( $(date +%s) - start )) s"
  .venv/bin/python bench/st_mboshi.py "${DEC[@]}" mboshi-st-e2e-dec > "$OUT/final-e2e.jsonl"
fi
grep -h '"by": "overall"' "$OUT"/final-*.jsonl

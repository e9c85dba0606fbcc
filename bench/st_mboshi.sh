#!/usr/bin/env bash
# Real-data benchmark of the st recipe on Mboshi -> French (train 1,539 utts -> dev 503; 11 truncated dev WAVs are
# skipped at import): an asr model, then the cascade (an mt model on the train transcripts -> French, fed the asr
# model's n-best) and the end-to-end model (encoder initialised from the same asr model, auxiliary CTC), each
# scored on dev with chrF and BLEU (sacrebleu, 95% bootstrap CIs) per speaker and elicitation source.
# Sized for a 2-core CPU shared with other jobs (each training <= ~30 min there); see docs/st.md.
# Usage: bash bench/st_mboshi.sh ../shared/data/mboshi [OUT]        (steps: ASR_STEPS, MT_STEPS, E2E_STEPS)
set -euo pipefail
DATA=${1:?usage: bash bench/st_mboshi.sh ../shared/data/mboshi [OUT]}
OUT=${2:-.bench/st}
HEARTH=.venv/bin/hearth
export HEARTH_WORKSPACE=$OUT/ws
mkdir -p "$OUT"
.venv/bin/python bench/st_mboshi_stage.py "$OUT/mboshi-archive" --data "$DATA"
[ -f "$HEARTH_WORKSPACE/hearth.yaml" ] || $HEARTH init "$HEARTH_WORKSPACE"
$HEARTH data import "$OUT/mboshi-archive" | tail -1
ASR=mboshi-st-asr
# 1. The asr model (configs/mboshi-asr.yaml, shortened: no speed perturbation, 460 steps).
[ -f "$HEARTH_WORKSPACE/models/$ASR/model.safetensors" ] || $HEARTH train configs/mboshi-asr.yaml --set name=$ASR \
  --set train.steps="${ASR_STEPS:-460}" --set train.warmup=100 --set "model.augment.speed=[1.0]" \
  --set train.checkpoint_every=100 --set train.keep_last=2 --set train.average_last=2
# 2 and 3 run side by side: the cascade's text model and the end-to-end model.
start=$(date +%s)
$HEARTH train configs/mboshi-st-cascade.yaml --set model.init_from="$HEARTH_WORKSPACE/models/$ASR" \
  --set train.steps="${MT_STEPS:-800}" > "$OUT/cascade.log" 2>&1 &
cascade=$!
$HEARTH train configs/mboshi-st-e2e.yaml --set model.init_from="$HEARTH_WORKSPACE/models/$ASR" \
  --set train.steps="${E2E_STEPS:-240}" > "$OUT/e2e.log" 2>&1 &
e2e=$!
wait $cascade; echo "cascade done: $(( $(date +%s) - start )) s"; tail -12 "$OUT/cascade.log"
wait $e2e; echo "e2e done: $(( $(date +%s) - start )) s"; tail -12 "$OUT/e2e.log"
# The cascade with the 4 best transcripts instead of 1 (decoding only; same weights).
$HEARTH eval mboshi-st-cascade --set nbest=4 --by speaker --by source

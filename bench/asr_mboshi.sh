#!/usr/bin/env bash
# Real-data benchmark of the asr recipe on Mboshi: stage, import (11 truncated dev files are skipped),
# train on train/ and evaluate on dev/ per speaker and per elicitation source, with 95% CIs; wall time.
# Usage: [NAME=run-name] [DISJOINT=1] bash bench/asr_mboshi.sh ../shared/data/mboshi [OUT] [--set overrides...]
set -euo pipefail
DATA=${1:?usage: bash bench/asr_mboshi.sh ../shared/data/mboshi [OUT]}
OUT=${2:-.bench}
shift $(( $# > 1 ? 2 : 1 ))
source bench/mboshi_import.sh
NAME=${NAME:-$(.venv/bin/python -c "import yaml; print(yaml.safe_load(open('configs/mboshi-asr.yaml'))['name'])")}
start=$(date +%s)
$HEARTH train configs/mboshi-asr.yaml "$@" --set name="$NAME"
echo "train+eval wall time: $(( $(date +%s) - start )) s"
$HEARTH eval "$NAME" --by speaker --by source
# Speaker-disjoint: never hear martial in training (abiayi and kouarata, train and dev), test on all of martial.
if [ "${DISJOINT:-0}" = 1 ]; then
  $HEARTH train configs/mboshi-asr.yaml "$@" --set name="$NAME-disjoint" --set split.by=speaker \
    --set "split.test_values=[martial]"
  $HEARTH eval "$NAME-disjoint" --by speaker --by source
fi

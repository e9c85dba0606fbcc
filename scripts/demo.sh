#!/usr/bin/env bash
# The demo: a fresh workspace, a synthetic archive, import, plan, governed training, per-group evaluation, card.
set -euo pipefail
DIR=${HEARTH_DEMO_DIR:-demo-workspace}
HEARTH=.venv/bin/hearth
rm -rf "$DIR" "$DIR.keys"  # the community key folder sits beside the workspace, never inside
$HEARTH init "$DIR"
export HEARTH_WORKSPACE=$DIR
$HEARTH demo-data speech "$DIR/archive"
$HEARTH data import "$DIR/archive"
$HEARTH data ls
$HEARTH plan configs/demo-asr.yaml
$HEARTH train configs/demo-asr.yaml

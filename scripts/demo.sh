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

# Web app accounts, printed with one-time passwords (README: `hearth serve --workspace demo-workspace`).
# The workspace owner makes the community's first steward; the steward adds the rest and a protocol.
COMM="Te Hapori Tauira (demo community)"
echo "== demo accounts for the web app (each password is one-time: the first sign-in asks for a new one) =="
$HEARTH users add aroha --steward-of "$COMM"
$HEARTH users add rangi --community "$COMM" --role researcher --by aroha
$HEARTH users add hine --community "$COMM" --role member --by aroha
$HEARTH users add mere --community "$COMM" --role member --by aroha
$HEARTH protocol create demo-tapu --community "$COMM" --by aroha --description "keepers of the secret/sacred recordings"
$HEARTH protocol add-member demo-tapu hine --by aroha
# The secret/sacred recordings go under the protocol: hine (inside) may open them, mere and rangi (outside) may not.
mapfile -t SECRET < <(awk -F, '/tk:secret_sacred/ {sub(/\.wav$/, "", $1); print $1}' "$DIR/archive/metadata.csv")
$HEARTH protocol assign demo-tapu -c demo-korero $(printf -- '-i %s ' "${SECRET[@]}") --by aroha
echo "aroha: steward · rangi: researcher · hine: member inside protocol demo-tapu · mere: member outside it"
echo "start the web app: .venv/bin/hearth serve --workspace $DIR   (then open http://127.0.0.1:8080)"

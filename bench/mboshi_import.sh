# Sourced by the Mboshi benchmark scripts (needs DATA and OUT): stage ../shared/data/mboshi as an archive and
# import it into the workspace $OUT/ws (idempotent); sets HEARTH and HEARTH_WORKSPACE.
HEARTH=.venv/bin/hearth
export HEARTH_WORKSPACE=$OUT/ws
mkdir -p "$OUT"
.venv/bin/python bench/mboshi_stage.py "$OUT/mboshi-archive" --data "$DATA"
[ -f "$HEARTH_WORKSPACE/hearth.yaml" ] || $HEARTH init "$HEARTH_WORKSPACE"
$HEARTH data import "$OUT/mboshi-archive" | tail -1

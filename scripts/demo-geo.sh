#!/usr/bin/env bash
# The land demo: synthetic scenes, import, change and land-cover training under policy, a change map and report.
set -euo pipefail
DIR=${HEARTH_DEMO_DIR:-demo-geo-workspace}
HEARTH=.venv/bin/hearth
rm -rf "$DIR"
$HEARTH init "$DIR"
export HEARTH_WORKSPACE=$DIR
$HEARTH demo-data geo "$DIR/scenes" --scenes 8 --size 128
$HEARTH data import-geotiff "$DIR/scenes"
$HEARTH train configs/demo-change.yaml
$HEARTH train configs/demo-landcover.yaml
$HEARTH monitor demo-change --before "$DIR/scenes/scene06/imgs_1" --after "$DIR/scenes/scene06/imgs_2" \
  --territory "$DIR/scenes/scene06/scene06.geojson" --out "$DIR/maps/scene06"
echo "open $DIR/maps/scene06/report.html"

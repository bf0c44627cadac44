#!/usr/bin/env bash
# Reproduce the demo checkpoints shipped in src/napari_xt/data/ with napari-xt's own sample writer and trainer.
# DEMO models: trained on synthetic images only; they show how napari-xt works, they are not clinical or
# operational models. CPU only; about an hour on 2 busy cores. Usage: scripts/make_demo_models.sh [WORK_DIR]
set -euo pipefail
XT="${XT:-napari-xt}"
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-demo_work}"
mkdir -p "$work" && cd "$work"

# tissue: 4-class segmentation (background, stroma, nucleus, gland) at 1 µm/px, on a slide the demo never shows
$XT sample tissue tissue_train.ome.tif --size 6144 --seed 1 --labels tissue_train_labels.ome.tif --overwrite
$XT train --image tissue_train.ome.tif --labels tissue_train_labels.ome.tif --ignore-label 255 \
  --class-names background,stroma,nucleus,gland --class-colors '0,0,0;60,180,75;0,130,200;255,200,0' \
  --mpp 1.0 --region-size 256 --window-size 2 --context-options '{"hidden": 128}' \
  --epochs 30 --patience 8 --seed 0 --name demo-tissue \
  --description "DEMO model trained on synthetic tissue (napari-xt sample tissue); not for clinical use" \
  --out demo_tissue.safetensors --overwrite

# SAR: ship detection + water/land/ship segmentation at 20 m/px (VV/VH dB), on a scene the demo never shows
$XT sample sar sar_train.ome.tif --size 6144 --seed 1 --labels sar_train_labels.ome.tif --objects sar_train_ships.csv \
  --overwrite
$XT train --image sar_train.ome.tif --labels sar_train_labels.ome.tif --ignore-label 255 \
  --points sar_train_ships.csv --class-names water,land,ship --class-colors '20,40,120;150,120,70;255,60,60' \
  --mpp 20 --region-size 256 --window-size 2 --context-options '{"hidden": 128}' \
  --epochs 15 --patience 6 --seed 0 --name demo-sar \
  --description "DEMO model trained on a synthetic SAR scene (napari-xt sample sar); not an operational detector" \
  --out demo_sar.safetensors --overwrite

cp demo_tissue.safetensors demo_sar.safetensors "$here/src/napari_xt/data/"
echo "demo models written to $here/src/napari_xt/data/"

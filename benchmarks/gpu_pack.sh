#!/usr/bin/env bash
# Here, on the CPU machine: stage what the GPU check needs into .gpu/payload.part-NN (56 MiB each,
# one per device call; .gpu/ is git-ignored). The payload: onnxruntime-gpu and pytest wheels for
# Python 3.12, the bundle's optimized and fp16 variants with its manifest, probes and tokenizer, the
# PyTorch checkpoint it was exported from (for the seed path), and SST-2's test.tsv. Nothing of it
# is committed; the GPU machine reaches no registry, so everything travels.
#   benchmarks/gpu_pack.sh [BUNDLE]        (default: the default bundle; SST-2 from $ORTPIPE_SST2_DIR
#                                           or ../shared/data/sst2)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
bundle=${1:-$($py -c 'from ortpipe.runtime import default_bundle_dir; print(default_bundle_dir())')}
sst2=${ORTPIPE_SST2_DIR:-../shared/data/sst2}
ort_version=${ORT_GPU_VERSION:-1.31.1}  # the onnxruntime-gpu build that links CUDA 13 (../shared/gpu/README.md)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle" "$stage/wheels" .gpu
for file in ortpipe.json probes.json tokenizer.json model.optimized.onnx model.fp16.onnx; do
    cp "$bundle/$file" "$stage/bundle/"
done
checkpoint=$($py -c "
from pathlib import Path
from ortpipe.benchmarks.paths import checkpoint_for
from ortpipe.runtime import read_manifest
print(checkpoint_for(Path('$bundle'), read_manifest('$bundle')))")
cp -r "$checkpoint" "$stage/checkpoint"
cp "$sst2/test.tsv" "$stage/test.tsv"
$py -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$stage/wheels" "onnxruntime-gpu==$ort_version"
$py -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 -d "$stage/wheels" \
    pytest pluggy iniconfig packaging
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -f .gpu/payload.part-* .gpu/payload.sha256
tar -cf "$stage.tar" -C "$stage" .
(cd .gpu && split -b 56M -d "$stage.tar" payload.part- && sha256sum "$stage.tar" | sed "s|$stage.tar|payload.tar|" > payload.sha256)
rm -f "$stage.tar"
ls -la .gpu
echo "next: one device call per .gpu/payload.part-NN, then benchmarks/gpu_check.sh (see docs/gpu.md)"

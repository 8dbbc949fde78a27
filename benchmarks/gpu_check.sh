#!/usr/bin/env bash
# There, on the GPU machine, after every .gpu/payload.part-NN was copied to /tmp/gpu (one call each):
# reassemble and verify the payload, install onnxruntime-gpu and pytest into /tmp/site, run the CUDA
# tests and the GPU benchmark, and write everything to OUT.
#   benchmarks/gpu_check.sh OUT            (run from the project's root; carries .gpu/payload.sha256)
set -euo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
here=$PWD
mkdir -p "$out"
cd /tmp/gpu
cat payload.part-* > payload.tar
cp "$here/.gpu/payload.sha256" . && sha256sum -c payload.sha256
rm -rf x && mkdir x && tar -xf payload.tar -C x && rm payload.tar
python3 -m pip install --quiet --no-index --no-deps --target /tmp/site x/wheels/*.whl
mkdir -p /tmp/site/ortpipe
for part in runtime export benchmarks serve; do ln -sfn "$here/$part" "/tmp/site/ortpipe/$part"; done
cd "$here"
export PYTHONPATH=/tmp/site ORTPIPE_TEST_BUNDLE=/tmp/gpu/x/bundle ORTPIPE_HOME=/tmp/ortpipe-home
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, o.get_available_providers()); print('torch', torch.__version__, torch.version.cuda)"
} 2>&1 | tee "$out/device.txt"
set +e  # from here each step runs whatever the one before it gave
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/tests.txt"
python3 -m ortpipe.cli doctor --bundle /tmp/gpu/x/bundle --provider cuda 2>&1 | tee "$out/doctor.txt"
python3 -m ortpipe.benchmarks.gpu_bench --bundle /tmp/gpu/x/bundle --checkpoint /tmp/gpu/x/checkpoint \
    --texts /tmp/gpu/x/test.tsv --out "$out" 2>&1 | tee "$out/bench.txt"

#!/usr/bin/env bash
# The GPU pack: the CUDA paths checked and timed in one run of at most 9 minutes on a machine with
# one CUDA GPU and 16 cores. One `name value unit` line per figure on stdout (as the other
# benches), progress on stderr, each stage under its own time limit so that one that hangs cannot
# eat the rest:
#
#   1. `pytest -m gpu`: the tests that need CUDA (graph-captured updates against eager ones, ...)
#   2. SAC updates/s at batch 256, eager and graph-captured: 2 critics, and an ensemble of 10
#   3. ConveyorPick-v1 SAC from 20 demos on the GPU with 16 envs, trained for what is left of
#      the 9 minutes less the final evaluation and stage 4 (at most 400 s), scored on 100 fixed seeds
#   4. whole-episode collection at 16 processes against the machine's ceiling (ConveyorPick-v1)
#
# Usage, from the project root:  bash bench/gpu_check.sh [OUT_DIR]
# Where the machine lacks pybullet, gymnasium or pydantic, put their wheels in .whl/ (and the GL
# loader packages PyBullet's EGL renderer needs in .gl/); they are installed under /tmp first.
# Without CUDA it still runs and says so: the CUDA figures are reported as not measured.
set -u
START=$SECONDS
TOTAL=${GPU_CHECK_SECONDS:-540}
OUT=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # 16 workers, 16 cores
say() { echo "# $*" >&2; }
left() { echo $((TOTAL - (SECONDS - START))); }

if [ -d .gl ] && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" / 2>/dev/null; done
    ldconfig 2>/dev/null
    vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
fi
if ! $PY -c "import pybullet, gymnasium, pydantic" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        say "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ under /tmp/site"
        $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
    fi
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
$PY -c "import pybullet, gymnasium, pydantic, torch" || { say "missing packages (see the usage above)"; exit 1; }
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
echo "cuda_available $CUDA bool"
[ "$CUDA" = 1 ] && say "GPU: $($PY -c 'import torch; print(torch.cuda.get_device_name(0))')" || say "no CUDA: the CUDA figures are not measured"
DEV=$([ "$CUDA" = 1 ] && echo cuda || echo cpu)

# 1. the CUDA tests
say "1/4 pytest -m gpu"
timeout 150 $PY -m pytest -m gpu -q -p no:cacheprovider tests >"$OUT/pytest-gpu.log" 2>&1
rc=$?
summary=$(tail -n 1 "$OUT/pytest-gpu.log")
say "pytest -m gpu (exit $rc): $summary"
for kind in passed failed skipped error; do
    n=$(echo "$summary" | grep -oE "[0-9]+ $kind" | grep -oE "^[0-9]+" || true)
    echo "gpu_tests_$kind ${n:-0} tests"
done

# 2. SAC updates/s (batch 256): eager and graph-captured, 2 critics and an ensemble of 10
say "2/4 SAC updates/s"
timeout 120 $PY bench/bench_train.py --device "$DEV" --skip-ppo --skip-sac --batches 256 --modes eager graph \
    --ensembles 10 2>>"$OUT/updates.log" | grep -E "^sac_updates_per_s_batch256|^device_cuda" || say "updates: see $OUT/updates.log"

# 3. ConveyorPick-v1 from 20 demos, trained for what is left less the final evaluation and the
#    collection figures after it (at most 400 s, the full matrix's cell)
COLLECT_S=120
say "3/4 ConveyorPick-v1 SAC from 20 demos"
rm -rf "$OUT/pick-demos" "$OUT/pick-demos.safetensors"
t0=$SECONDS
timeout 90 $PY -m agents.cli demos ConveyorPick-v1 --episodes 20 --workers 16 --noise 0.1 \
    --out "$OUT/pick-demos.safetensors" >"$OUT/demos.log" 2>&1 || say "demos failed: see $OUT/demos.log"
echo "pick_demos_seconds $((SECONDS - t0)) s"
budget=$(($(left) - 75 - COLLECT_S))
[ $budget -gt 400 ] && budget=400
echo "pick_train_budget $budget s"
if [ $budget -lt 30 ]; then
    say "no time left for the ConveyorPick cell: not measured"
else
    timeout $((budget + 70)) $PY -m agents.cli train --env ConveyorPick-v1 --algo sac --demos "$OUT/pick-demos.safetensors" \
        --envs 16 --device "$DEV" --steps 10000000 --out "$OUT/pick-demos" --set max_seconds=$budget \
        --set eval_every=50000 --set eval_episodes=100 >"$OUT/pick.log" 2>&1 || say "the cell failed: see $OUT/pick.log"
    $PY - "$OUT/pick-demos/eval.json" <<'EOF' || say "no result from the ConveyorPick cell"
import json, sys
ev = json.load(open(sys.argv[1]))
print(f"pick_demos_success {ev['eval_success_rate']:.3g} fraction")
print(f"pick_demos_env_steps {ev['step']} steps")
print(f"pick_demos_train_seconds {ev['train_seconds']:.4g} s")
EOF
fi

# 4. whole-episode collection at 16 processes against the ceiling, in the time left
say "4/4 collection at 16 processes"
t=$(($(left) - 5))
[ $t -gt $COLLECT_S ] || t=$COLLECT_S
timeout $t $PY -m agents.cli bench --env ConveyorPick-v1 --procs 16 --procs-only --steps 100 --repeats 1 \
    2>>"$OUT/collect.log" | grep -E "(ceiling|pool_async|camera_fps|renderer_egl)" || say "collection: see $OUT/collect.log"
echo "gpu_check_seconds $((SECONDS - START)) s"

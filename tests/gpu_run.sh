#!/usr/bin/env bash
# One call on a CUDA machine: the GPU check (python bench.py --case=gpu), then config/gpu.py trained for ~3 minutes.
# What to keep lands in $OUT (default gpu-out): env.txt, gpucheck.txt/.json and the check's logs, train.log,
# log.jsonl, loss.png, summary.txt. Checkpoints (~0.7 GB) stay in $WORK. It installs nothing: torch (with CUDA),
# numpy, tqdm, safetensors and tiktoken must be there; transformers is optional (the hf_parity check).
#
#   OUT=gpu-out bash tests/gpu_run.sh          # ends by itself within DEADLINE seconds (default 570)
#
# Time: the check may take CHECK_S seconds (default 330; ~5 min expected on an H100), the training what is left.
# max_iters=6000 is ~3 min of training at the 40% MFU that config/gpu.py is sized for (30.6 ms per iteration,
# FLOP arithmetic, not measured); if time runs out first, SIGTERM makes train.py checkpoint and stop there.
# Exit code: the check's (0 when every check passed or skipped).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/nanocoda-gpu}
DEADLINE=${DEADLINE:-570}
CHECK_S=${CHECK_S:-330}
PY=${PYTHON:-python3}
START=$(date +%s)
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
elapsed() { echo $(( $(date +%s) - START )); }

{ nvidia-smi; "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
  "$PY" -c "import transformers; print('transformers', transformers.__version__)"; git log -1 --oneline; } > "$OUT/env.txt" 2>&1
tail -n 4 "$OUT/env.txt"

"$PY" -m data.pycode.prepare > "$OUT/prepare.log" 2>&1 || echo "data/pycode: prepare failed (see prepare.log)"
echo "[$(elapsed) s] data ready; the check, at most ${CHECK_S} s"

timeout -s TERM -k 20 "$CHECK_S" "$PY" bench.py --case=gpu --gpu_dir="$WORK/check" --out="$OUT/gpucheck.json" \
    --overwrite 2>&1 | tee "$OUT/gpucheck.txt" | grep -E '^(PASS|FAIL|SKIP|gpu check|error)'
CHECK_RC=${PIPESTATUS[0]}
cp "$WORK"/check/*.log "$OUT/" 2>/dev/null
echo "[$(elapsed) s] check exit code $CHECK_RC (124: it ran out of time)"

LEFT=$(( DEADLINE - $(elapsed) - 30 ))
if [ "$LEFT" -gt 60 ]; then
    timeout -s TERM -k 30 "$LEFT" "$PY" train.py config/gpu.py --max_iters=6000 --out_dir="$WORK/out-gpu" --overwrite \
        > "$OUT/train.log" 2>&1
    TRAIN_RC=$?
    cp "$WORK/out-gpu/log.jsonl" "$WORK/out-gpu/loss.png" "$OUT/" 2>/dev/null
    "$PY" - "$OUT/log.jsonl" "$TRAIN_RC" <<'EOF' | tee "$OUT/summary.txt"
import json, os, statistics, sys
path, rc = sys.argv[1:]
recs = [json.loads(line) for line in open(path)] if os.path.isfile(path) else []
last = recs[-1] if recs else {'iter': 0, 'loss': float('nan')}
val = [r for r in recs if 'val_bpb' in r] or [{'iter': 0, 'val_bpb': float('nan')}]
tps = [r['tokens_per_s'] for r in recs[len(recs) // 5:]] or [0]  # past the compile
print(f"config/gpu.py: exit code {rc} (124 or 1 after SIGTERM: stopped by the time limit), {last['iter']} iterations, "
      f"last loss {last['loss']:.3f}, val {val[-1]['val_bpb']:.3f} bits/byte at iteration {val[-1]['iter']}, "
      f"median {statistics.median(tps):,.0f} tokens/s")
EOF
else
    echo "no time left to train (${LEFT} s)"
fi
echo "[$(elapsed) s] done"
exit "$CHECK_RC"

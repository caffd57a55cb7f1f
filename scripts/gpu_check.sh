#!/usr/bin/env bash
# lrexp's GPU check (issue 25.11): one command for a lent GPU machine, under 10 minutes, everything it
# measures written to $OUT/gpu_check.log and $OUT/bench.json. lrexp has never run on a GPU: every figure
# from here is news, to be put in the docs (docs/performance.md) with the device named.
#
# Prepare, on this machine, once (the device machine reaches no network; its python3 has torch and
# transformers, not hydra-core, omegaconf or antlr4):
#   bash scripts/gpu_check.sh --prepare        # pip download the missing wheels into .gpu-wheels/ (git-ignored)
# Then with the device tool: run(command="bash scripts/gpu_check.sh", carry=[".gpu-wheels"], timeout_s=600).
#
# Steps (each bounded by its own timeout, so that one stuck step still leaves the others' figures):
#   1. the machine: nvidia-smi, torch's CUDA build, bf16 support;
#   2. lrexp installed over the machine's torch (no dependency pulled), its imports checked;
#   3. the CUDA tests: a digits and a tinylm run on run.device=cuda (bf16 autocast by default), their
#      summaries checked (device, precision, finite losses), a SIGTERM + resume equal to the uninterrupted run;
#   4. bf16 fine-tuning of a tiny Hugging Face GPT-2 made on the spot (task=hf_lm, pretrained weights);
#   5. scripts/bench.py --only throughput,tinylm,hf,sweep (the sweep section: batched vs parallel).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu-wheels
MISSING="hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 hydra-joblib-launcher==1.2.0"

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$WHEELS"
  python3 -m pip download -q --no-deps -d "$WHEELS" $MISSING
  grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
  ls -l "$WHEELS"
  exit 0
fi

OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
run() {  # run LIMIT_S COMMAND...: a step that may fail without ending the check
  local limit=$1; shift
  timeout "$limit" "$@"; local rc=$?
  echo "--- rc=$rc: $*"
  return 0
}

step "1. the machine"
nvidia-smi || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"

step "2. lrexp over the machine's torch"
[ -d "$WHEELS" ] && python3 -m pip install -q --no-index --find-links "$WHEELS" $MISSING
python3 -m pip install -q --no-deps --no-build-isolation -e . || python3 -m pip install -q --no-deps -e .
python3 - <<'EOF'
import importlib
missing = [m for m in ("hydra", "omegaconf", "matplotlib", "scipy", "sklearn", "tqdm", "yaml", "wandb", "transformers") if importlib.util.find_spec(m) is None]
print("missing imports:", ", ".join(missing) or "none")
EOF

step "3. CUDA runs: digits and tinylm, resume"
export OMP_NUM_THREADS=4
work=$(mktemp -d)
run 120 python3 -m lrexp run.device=cuda logger.local.plots=false run.progress=false hydra.run.dir="$work/digits"
run 180 python3 -m lrexp task=tinylm run.device=cuda run.steps=300 logger.local.plots=false run.progress=false hydra.run.dir="$work/tinylm"
RESUME="task=tinylm run.device=cuda run.steps=300 run.checkpoint_every=50 run.log_every=1 logger.local.plots=false run.progress=false"
python3 -m lrexp $RESUME hydra.run.dir="$work/cut" & pid=$!
sleep 25; kill -TERM $pid; wait $pid
run 180 python3 -m lrexp $RESUME run.resume=true hydra.run.dir="$work/cut"
python3 - "$work" <<'EOF'
import json, math, sys
from pathlib import Path
work = Path(sys.argv[1])
for name in ("digits", "tinylm", "cut"):
    s = json.loads((work / name / "summary.json").read_text()) if (work / name / "summary.json").exists() else {}
    losses = {k: v for k, v in s.items() if k.startswith("final_") and "loss" in k}
    ok = s.get("status") == "completed" and s.get("device", "").startswith("cuda") and all(math.isfinite(v) for v in losses.values())
    print(f"{name}: {'OK' if ok else 'FAILED'} status={s.get('status')} device={s.get('device')} precision={s.get('precision')} "
          f"steps/s={s.get('steps_per_s')} {losses}")
a, b = (work / "tinylm" / "metrics.csv"), (work / "cut" / "metrics.csv")
if a.exists() and b.exists():
    last = lambda p: p.read_text().strip().splitlines()[-1].split(",")[:3]
    print("resumed run's last row equals the uninterrupted one's (step, lr, train loss):", last(a) == last(b), last(a), last(b))
EOF

step "4. bf16 fine-tuning of a tiny Hugging Face GPT-2"
python3 - "$work" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.hf_models import make_models
print(make_models(Path(sys.argv[1]) / "hf"))
EOF
run 240 python3 -m lrexp task=hf_lm task.model="$work/hf/gpt" task.data="$work/hf/corpus.txt" task.context=64 run.steps=200 \
  run.device=cuda run.precision=bf16 optimizer.lr=5e-4 logger.local.plots=false run.progress=false hydra.run.dir="$work/hf_run"
cat "$work/hf_run/summary.json" 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin); print({k: s.get(k) for k in ('status','device','precision','steps_per_s','final_val_loss','final_test_loss')})"

step "5. bench: throughput, tinylm, hf, sweep (batched vs parallel)"
run 300 python3 scripts/bench.py --only throughput,tinylm,hf,sweep --quick --out "$OUT/bench.json"
step "done"

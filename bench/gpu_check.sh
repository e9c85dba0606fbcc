#!/usr/bin/env bash
# GPU readiness of the engine (issue 21) on one node: every GPU of this machine, NCCL, bf16.
#
#   1. DDP and FSDP2, each eager and with torch.compile (bench/gpu_engine_check.py: the engine's own process group,
#      side groups, checkpoints and metrics on a GPT over synthetic tokens);
#   2. kill-and-resume: rank 0 SIGKILLed after step 12, torchrun restarts the group, it resumes from checkpoint 10;
#      with train.deterministic the final weights must equal an uninterrupted run's bitwise, without it the losses
#      logged after the resume must agree (relative difference under 2%);
#   3. train.deterministic on the asr recipe's CTC loss must be refused in one line (no deterministic CUDA kernel);
#   4. bench/gpu_mfu.py: GPT-124M MFU against the 40% target;
#   5. the asr recipe's samples/s with the DataLoader data path (4 workers, pinned memory) against the old in-step
#      reading, same model, same run (bench/asr_throughput.py --data-path --synthetic: synthetic utterances imported
#      sealed into a scratch workspace); passes when the ratio is at least 1.0.
# Results: $OUT/summary.json (verdicts and one record per check), $OUT/env.txt, $OUT/logs.tar.gz (a log per
# check): three files, within what the device tool brings back. About 8 minutes on one H200.
#
# The GPU machine's image has torch but not all of hearthkit's dependencies. What these checks import beyond torch
# is pydantic and PyYAML; carry pydantic as wheels when the image lacks it (prepared on the workstation):
#   .venv/bin/pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 \
#       -d .gpu-wheels pydantic==2.14.4 && echo /.gpu-wheels/ >> .git/info/exclude
# and name .gpu-wheels in the device tool's `carry`. Then: bash bench/gpu_check.sh
# Check 5 imports hearthkit's catalog, store and audio stack; where the image lacks them, add their wheels too:
#   .venv/bin/pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 \
#       -d .gpu-wheels sqlalchemy alembic cryptography soundfile scipy
# (without them check 5 is recorded as failed with the missing module named; the others still run).
#
# Example: OUT=/tmp/gpu-check bash bench/gpu_check.sh
# (HEARTH_GPU_CHECK_CPU=1 runs the same steps on the CPU with a tiny model: it proves the script, not the GPU.)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
LOGS="$WORK/logs"
mkdir -p "$LOGS"
trap 'tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs; rm -rf "$WORK"' EXIT  # the logs come back, even after a failure
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
[ -d .gpu-wheels ] && $PY -m pip install -q --no-index --find-links .gpu-wheels pydantic >"$LOGS/pip.txt" 2>&1
# check 5's stack, where carried (pip keeps what the image has when it satisfies a requirement, e.g. numpy)
[ -d .gpu-wheels ] && ls .gpu-wheels | grep -qi '^sqlalchemy' && $PY -m pip install -q --no-index \
  --find-links .gpu-wheels sqlalchemy alembic cryptography soundfile scipy >>"$LOGS/pip.txt" 2>&1
if ! $PY -c "import torch, pydantic, yaml, safetensors" 2>"$LOGS/import.txt"; then
  echo "missing packages on this machine ($(tail -1 "$LOGS/import.txt")): carry .gpu-wheels, see this script's header"
  exit 2
fi
TINY=""
if [ "${HEARTH_GPU_CHECK_CPU:-0}" = 1 ]; then
  N=${NPROC:-2}; TINY=--tiny
else
  N=$($PY -c "import torch; print(torch.cuda.device_count())")
  [ "$N" -ge 1 ] || { echo "no CUDA GPU visible to torch here; nothing to check"; exit 2; }
  nvidia-smi >"$OUT/env.txt" 2>&1
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl',
  torch.cuda.nccl.version() if torch.cuda.is_available() else None, 'gpus', torch.cuda.device_count())" \
  >>"$OUT/env.txt" 2>&1
SUMMARY="$WORK/summary.jsonl"
: >"$SUMMARY"

engine() {  # engine NAME [args...]: one torchrun of the engine check; appends its result (or its failure)
  local name=$1; shift
  local restarts=0
  case " $* " in *" --kill-at "*) restarts=1 ;; esac
  timeout 420 $PY -m torch.distributed.run --standalone --nproc-per-node="$N" --max-restarts=$restarts \
    bench/gpu_engine_check.py --folder "$WORK/$name" $TINY "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  $PY - "$name" "$rc" "$WORK/$name" "$SUMMARY" <<'EOF'
import json, sys
from pathlib import Path
name, rc, run, summary = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
rec = {"check": name, "rc": rc}
if (run / "result.json").is_file():
    rec |= json.loads((run / "result.json").read_text())
metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").is_file() else []
steps = [m for m in metrics if "loss" in m]
if steps:
    last = steps[-1]
    rec |= {"losses": {m["step"]: round(m["loss"], 5) for m in steps}, "samples_per_s": last.get("samples_per_s"),
            "mfu": last.get("mfu")}
with open(summary, "a") as f:
    f.write(json.dumps(rec) + "\n")
print(f"{name}: rc {rc}", {k: rec.get(k) for k in ("samples_per_s", "mfu", "resumed_from", "peak_mem_gib")})
EOF
}

STEPS=30; [ -n "$TINY" ] && STEPS=20
engine ddp-eager --parallel ddp --steps $STEPS
engine ddp-compile --parallel ddp --compile --steps $STEPS
engine fsdp2-eager --parallel fsdp2 --steps $STEPS
engine fsdp2-compile --parallel fsdp2 --compile --steps $STEPS
engine det-whole --parallel ddp --deterministic --steps 20
engine det-killed --parallel ddp --deterministic --steps 20 --kill-at 12
engine free-whole --parallel ddp --steps 20
engine free-killed --parallel ddp --steps 20 --kill-at 12

# 3. The asr recipe's CTC loss under train.deterministic on CUDA: torch's alert, turned into one line by the engine.
$PY - "$SUMMARY" >"$LOGS/det-ctc.log" 2>&1 <<'EOF'
import json, sys
import torch
from hearthkit.engine.parallel import refusal_of
rec = {"check": "det-ctc-refused"}
if torch.cuda.is_available():
    torch.use_deterministic_algorithms(True)
    logp = torch.randn(20, 2, 10, device="cuda", requires_grad=True).log_softmax(-1)
    try:
        torch.nn.functional.ctc_loss(logp, torch.randint(1, 10, (2, 5), device="cuda"), [20, 20], [5, 5]).backward()
        rec["refusal"] = None
    except RuntimeError as exc:
        rec["refusal"] = refusal_of(exc)
rec["rc"] = 0 if rec.get("refusal") else 1
if not torch.cuda.is_available():  # the CPU smoke run: CTC backward is deterministic there, nothing to refuse
    rec |= {"rc": 0, "skipped": "no CUDA (HEARTH_GPU_CHECK_CPU smoke run)"}
open(sys.argv[1], "a").write(json.dumps(rec) + "\n")
print(rec)
EOF

# 4. MFU of the GPT-124M shape (single GPU, compiled, bf16): the 40% target.
if [ -z "$TINY" ]; then
  timeout 300 $PY bench/gpu_mfu.py --steps 30 --batch 16 >"$LOGS/mfu.log" 2>&1
  tail -1 "$LOGS/mfu.log" | $PY -c "import json,sys; r=json.loads(sys.stdin.read()); r['check']='gpt124m-mfu';
r['rc']=0 if (r.get('mfu') or 0)>=0.40 else 1; open('$SUMMARY','a').write(json.dumps(r)+'\n'); print(r)" \
    || echo '{"check": "gpt124m-mfu", "rc": 1}' >>"$SUMMARY"
fi

# 5. The asr data path: DataLoader workers + pinned memory vs the old in-step reading (samples/s, same run).
DATA_ARGS="--synthetic --items 400 --steps 60 --chunk 10 --workers 4 --device cuda --threads 4"
[ -n "$TINY" ] && DATA_ARGS="--synthetic --items 16 --steps 4 --chunk 2 --workers 1 --device cpu --threads 1"
timeout 480 $PY bench/asr_throughput.py $DATA_ARGS >"$LOGS/asr-data-path.log" 2>&1
$PY - "$SUMMARY" "$LOGS/asr-data-path.log" "$TINY" <<'EOF'
import json, sys
summary, log, tiny = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(log).read().splitlines()
rec = {"check": "asr-data-path"}
try:
    rec |= json.loads(lines[-1])
    # the CPU smoke run proves the script; on a GPU the loader path must be at least as fast as the old one
    rec["rc"] = 0 if tiny or rec["ratio_new_vs_old"] >= 1.0 else 1
except (IndexError, ValueError, KeyError):
    rec |= {"rc": 1, "error": lines[-1] if lines else "no output"}
open(summary, "a").write(json.dumps(rec) + "\n")
print({k: rec.get(k) for k in ("check", "rc", "ratio_new_vs_old", "error")})
EOF

# Verdicts: resume exactness and agreement, then one summary for the report.
$PY - "$SUMMARY" "$OUT/summary.json" <<'EOF'
import json, sys
recs = {r["check"]: r for r in map(json.loads, open(sys.argv[1]))}
def get(name, key):
    return recs.get(name, {}).get(key)
verdicts = {name: r["rc"] == 0 for name, r in recs.items()}
verdicts["det-bitwise-resume"] = (get("det-killed", "resumed_from") == 10 and get("det-whole", "weights_sha256")
                                  is not None and get("det-whole", "weights_sha256") == get("det-killed", "weights_sha256"))
a, b = get("free-whole", "losses") or {}, get("free-killed", "losses") or {}
after = [s for s in a if int(s) > 12 and s in b]
worst = max((abs(a[s] - b[s]) / abs(a[s]) for s in after), default=None)
verdicts["free-resume-loss-agrees"] = get("free-killed", "resumed_from") == 10 and worst is not None and worst < 0.02
out = {"verdicts": verdicts, "free_resume_worst_rel_loss_diff": worst, "checks": recs}
json.dump(out, open(sys.argv[2], "w"), indent=1)
for k, v in verdicts.items():
    print(f"{'PASS' if v else 'FAIL'}  {k}")
sys.exit(0 if all(verdicts.values()) else 1)
EOF

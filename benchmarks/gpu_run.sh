#!/usr/bin/env bash
# One whole GPU run of xpnet, offline, in under 8 minutes; see benchmarks/GPU.md.
#
#   benchmarks/gpu_run.sh [--data-dir DIR] [--budget SECONDS] OUTDIR [WHEELDIR]
#
# OUTDIR   receives gpu_run.log (everything), one <stage>.log per stage, the stages' own JSON
#          (info.json, check.json, train.json, bench.json, ...) and results.json (every
#          stage's status and time, the figures against the targets of benchmarks/GPU.md).
# WHEELDIR optional folder of wheels for what the machine lacks (array-api-compat, tqdm,
#          threadpoolctl, array-api-strict, pytest, hypothesis, ...): installed with
#          pip --no-index --no-deps --target into a temporary folder put on PYTHONPATH.
# --data-dir DIR  where mnist/ lives (default: $XPNET_DATA_DIR, else shared/datasets in the
#          repository when present); without MNIST the MNIST stages are skipped.
# --budget SECONDS  the whole run's time box (default 470); every stage also has its own
#          cap, and a stage never gets more than what is left, so one hang cannot eat the rest.
#
# CuPy and PyTorch must already be installed; nothing is downloaded. Without a CUDA device the
# GPU stages report "skipped: no CUDA device (...)" and the script still exits 0. The exit
# status is 1 when a stage that ran failed or timed out.

set -u -o pipefail

usage() {
    sed -n '4,5p' "$0" | sed 's/^# *//' >&2
    exit 2
}

DATA_DIR="${XPNET_DATA_DIR:-}"
BUDGET=470
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data-dir) [[ $# -ge 2 ]] || usage; DATA_DIR="$2"; shift 2 ;;
        --budget) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; BUDGET="$2"; shift 2 ;;
        -h | --help) usage ;;
        --*) echo "gpu_run.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -ge 1 && $# -le 2 ]] || usage
OUT_ARG="$1"
WHEELS="${2:-}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$OUT_ARG" || exit 1
OUT="$(cd "$OUT_ARG" && pwd)"
LOG="$OUT/gpu_run.log"
STAGES="$OUT/stages.tsv"
PYTHON="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=15 # kept back for the summary
NO_GPU=""  # why the cupy backend cannot run here (empty: it can)
MNIST=""   # the data dir when it holds MNIST
: >"$LOG"
: >"$STAGES"
cd "$REPO" || exit 1

say() { echo "[gpu_run $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# record NAME STATUS RC SECONDS NOTE
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >>"$STAGES"
    say "stage $1: $2${5:+ ($5)}"
}

# stage NAME CAP_SECONDS {cpu|gpu|mnist} COMMAND...
# Runs COMMAND under `timeout` (SIGTERM to its whole process group, SIGKILL 10 s later) with
# at most CAP seconds and never past the deadline; output to OUTDIR/NAME.log and the main log.
stage() {
    local name="$1" cap="$2" needs="$3"
    shift 3
    if [[ $needs != cpu && -n $NO_GPU ]]; then
        record "$name" skipped "" 0 "skipped: no CUDA device"
        return 0
    fi
    if [[ $needs == mnist && -z $MNIST ]]; then
        record "$name" skipped "" 0 "skipped: no MNIST under the data dir (--data-dir DIR)"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s) - RESERVE))
    if ((left < 10)); then
        record "$name" skipped "" 0 "skipped: out of time (budget ${BUDGET}s)"
        return 0
    fi
    local limit=$((cap < left ? cap : left)) t0 rc status
    t0=$(date +%s)
    say "stage $name: start (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log" >>"$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    record "$name" "$status" "$rc" $(($(date +%s) - t0)) "limit ${limit}s"
    return 0
}

# Copy the newest benchmarks/results/PATTERN written after stage start to OUTDIR/NAME.
keep_result() {
    local pattern="$1" target="$2" newest
    newest=$(find "$REPO/benchmarks/results" -maxdepth 1 -name "$pattern" -newer "$STAGES.mark" \
        -print 2>/dev/null | sort | tail -n 1)
    if [[ -n $newest ]]; then cp "$newest" "$OUT/$target"; fi
}
mark() { touch "$STAGES.mark"; }

say "xpnet GPU run: repo $REPO, out $OUT, budget ${BUDGET}s, python $PYTHON"

# ----------------------------------------------------------------------------- environment
DEPS=""
if [[ -n $WHEELS ]]; then
    DEPS="$(mktemp -d "${TMPDIR:-/tmp}/xpnet-gpu-run-deps.XXXXXX")"
    shopt -s nullglob
    wheels=("$WHEELS"/*.whl)
    shopt -u nullglob
    if [[ ${#wheels[@]} -eq 0 ]]; then
        record wheels failed 1 0 "no .whl files in $WHEELS"
    else
        stage wheels 120 cpu "$PYTHON" -m pip install --no-index --no-deps \
            --disable-pip-version-check --target "$DEPS" "${wheels[@]}"
    fi
fi
export PYTHONPATH="$REPO${DEPS:+:$DEPS}${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1 HF_HUB_OFFLINE=1 CUPY_TF32="${CUPY_TF32:-0}"

if [[ -z $DATA_DIR && -d $REPO/shared/datasets ]]; then DATA_DIR="$REPO/shared/datasets"; fi
if [[ -n $DATA_DIR ]] && compgen -G "$DATA_DIR/mnist/train-images-idx3-ubyte*" >/dev/null; then
    MNIST="$DATA_DIR"
    export XPNET_DATA_DIR="$DATA_DIR"
fi
say "data: ${MNIST:-no MNIST found (data dir: ${DATA_DIR:-none})}"

if command -v nvidia-smi >/dev/null; then
    stage nvidia-smi 30 cpu nvidia-smi
else
    record nvidia-smi skipped "" 0 "skipped: nvidia-smi not found"
fi
stage imports 60 cpu "$PYTHON" - <<'EOF'
import importlib, sys
print(sys.version)
for name in ("numpy", "array_api_compat", "tqdm", "threadpoolctl", "cupy", "torch",
             "array_api_strict", "pytest", "hypothesis", "safetensors", "xpnet"):
    try:
        module = importlib.import_module(name)
        print(f"{name:18} {getattr(module, '__version__', '?')}")
    except Exception as exc:
        print(f"{name:18} MISSING ({type(exc).__name__}: {exc})")
EOF

# The library's own answer to "can the cupy backend run here?" (empty: yes).
if ! probe="$(timeout 120 "$PYTHON" -c '
from xpnet.backend import unavailable_reason
print(unavailable_reason("cupy") or "")' 2>&1)"; then
    NO_GPU="xpnet does not import: $(tail -n 1 <<<"$probe")"
else
    NO_GPU="$(tail -n 1 <<<"$probe")"
fi
if [[ -n $NO_GPU ]]; then
    say "no CUDA device for xpnet: $NO_GPU"
else
    say "the cupy backend is available"
fi

# ----------------------------------------------------------------------------- stages
stage info 60 cpu "$PYTHON" -m xpnet info --json "$OUT/info.json"

# In the order of the brief; the caps add up to more than the budget on purpose: a stage
# that finishes early leaves its time to the next, and the deadline bounds the total.
stage check 90 gpu "$PYTHON" -m xpnet check --backend cupy --json "$OUT/check.json"

stage tests 200 gpu env XPNET_REQUIRE_GPU=1 XPNET_TEST_BACKENDS=cupy CUPY_TF32=0 \
    "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml "$OUT/tests.xml" tests

# benchmarks/agreement.py runs each case in its own process with CUPY_TF32 set for it:
# float64 and float32 with TF32 off (0), float32 with TF32 on (1).
mark
stage agreement 90 gpu "$PYTHON" benchmarks/agreement.py --require-gpu
keep_result 'gpu-agreement.json' agreement.json

# Seed MLP and CLI-like model against PyTorch eager; kernels per step through CUPTI.
mark
stage bench 180 mnist "$PYTHON" benchmarks/bench_gpu.py --require-gpu
keep_result 'gpu-bench-*.json' bench.json

stage train 90 mnist "$PYTHON" -m xpnet train --backend cupy --no-download --quiet \
    --json "$OUT/train.json"

# Can a step be captured as one CUDA graph (cupy#6290), and the graph's kernel count.
mark
stage cuda-graph 60 gpu "$PYTHON" benchmarks/cuda_graph_experiment.py
keep_result 'gpu-cuda-graph.json' cuda-graph.json

stage check-tf32 60 gpu env CUPY_TF32=1 "$PYTHON" -m xpnet check --backend cupy \
    --json "$OUT/check-tf32.json"
stage tests-tf32 60 gpu env XPNET_REQUIRE_GPU=1 XPNET_TEST_BACKENDS=cupy CUPY_TF32=1 \
    "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml "$OUT/tests-tf32.xml" \
    tests/test_gpu_agreement.py

# ----------------------------------------------------------------------------- summary
rm -f "$STAGES.mark"
if [[ -n $DEPS ]]; then rm -rf "$DEPS"; fi
timeout 30 "$PYTHON" - "$OUT" "$START" "$BUDGET" "$NO_GPU" "$MNIST" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, socket, sys, time
from pathlib import Path

out, start, budget, no_gpu, mnist = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]


def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None


stages = []
for line in (out / "stages.tsv").read_text().splitlines():
    name, status, rc, seconds, note = (line.split("\t") + [""] * 5)[:5]
    stages.append({"name": name, "status": status, "rc": int(rc) if rc else None,
                   "seconds": int(seconds), "note": note, "log": f"{name}.log"})

figures, targets = {}, []


def target(what, value, limit, better="low"):
    met = None if value is None else (value <= limit if better == "low" else value >= limit)
    targets.append({"target": what, "value": value, "limit": limit, "met": met})


bench = load("bench.json")
if bench:
    deep = bench["cases"].get("deep-b128", {}).get("results", {})
    x, t = deep.get("xpnet-cupy", {}), deep.get("torch", {})
    ratio = None
    if x.get("median_epoch_seconds") and t.get("median_epoch_seconds"):
        ratio = x["median_epoch_seconds"] / t["median_epoch_seconds"]
    figures["seed_mlp_epoch_seconds"] = {"xpnet": x.get("median_epoch_seconds"),
                                         "torch": t.get("median_epoch_seconds")}
    figures["seed_mlp_kernels_per_step"] = {"xpnet": x.get("kernels_per_step"),
                                            "torch": t.get("kernels_per_step")}
    target("seed MLP epoch time / torch eager (batch 128)", ratio, 0.5)
    target("seed MLP kernel launches per step", x.get("kernels_per_step"), 25)
    t98 = (bench.get("time_to_98") or {}).get("results", {})
    figures["time_to_98_constant_lr"] = t98
train = load("train.json")
if train:
    figures["xpnet_train_cupy"] = {k: train.get(k) for k in
                                   ("test_accuracy", "train_seconds", "epochs", "backend")}
    target("xpnet train --backend cupy test accuracy", train.get("test_accuracy"), 0.98, "high")
    target("xpnet train --backend cupy training seconds", train.get("train_seconds"), 3.0)
for name in ("check", "check-tf32"):
    report = load(f"{name}.json")
    if report:
        figures[name] = {"agree": report.get("agree"), "backends": report.get("backends")}
        target(f"xpnet {name} agrees", 1.0 if report.get("agree") else 0.0, 1.0, "high")
graph = load("cuda-graph.json")
if graph:
    figures["cuda_graph"] = {k: graph.get(k) for k in
                             ("plain_capture", "direct_cublas_capture", "speedup_graph_vs_xpnet",
                              "graph_kernel_nodes")}
info = load("info.json")
if info:
    figures["backends"] = info.get("backends")
    figures["cuda"] = info.get("cuda")
agreement = load("agreement.json")
if agreement:
    figures["agreement"] = agreement.get("results")

ran = [s for s in stages if s["status"] != "skipped"]
result = {
    "host": socket.gethostname(),
    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
    "seconds": int(time.time()) - start,
    "budget_seconds": int(budget),
    "gpu": None if no_gpu else "cupy backend available",
    "no_gpu_reason": no_gpu or None,
    "mnist": mnist or None,
    "ok": all(s["status"] == "ok" for s in ran),
    "stages": stages,
    "figures": figures,
    "targets": targets,
}
(out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"wrote {out / 'results.json'}")
for s in stages:
    print(f"  {s['name']:<12} {s['status']:<8} {s['seconds']:>4}s  {s['note']}")
for t in targets:
    print(f"  target {t['target']}: {t['value']} (limit {t['limit']}): "
          f"{ {True: 'met', False: 'MISSED', None: 'n/a'}[t['met']] }")
sys.exit(0 if result["ok"] else 1)
EOF
rc=${PIPESTATUS[0]}
say "done in $(($(date +%s) - START))s, exit $rc"
exit "$rc"

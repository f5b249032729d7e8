#!/usr/bin/env bash
# One device session's work, in order of importance, each step time-boxed; everything ends up in
# OUT/gpu-results.tar.gz (the device returns at most 8 files), re-made after each step.
# CASES ("name iters every;...") and CASES_RT choose the cases step's captures; CG_CASES and WRAP_CASES
# ("name iters K;...") the cudagraphs step's; RANKS_RT the ranks step's runtimes; DEADLINE (seconds from
# the start) gives the tests step what is left, else TESTS_TIMEOUT.
#   source .trtbundle/activate.sh && bash scripts/gpu_run.sh "$OUT" [steps...]
# steps: probe cupti-raw launch-time tests long cudagraphs python-only kernel-acc bench-kernels bench-kernels-broken bert bench bench-broken goal goal-profile breakdown sample-log hooks nsys nsys-acc profile cases
#        ranks (two ranks sharing one GPU) ranks2 (one rank per GPU, on nvidia-h200-x2) (default: tests bert bench nsys)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
BENCH_EXTRA=${BENCH_EXTRA:-}
steps=${*:-tests bert bench nsys}
w=$(mktemp -d)/res; mkdir -p "$w/cases"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
log() { echo "== $*" | tee -a "$w/steps.txt"; }
quiet() { grep -v -E "WARNING|warnings.warn|^$|Unable to import|CUDA 13 is not|return cls|TRT-LLM" ; }
for s in $steps; do
  case $s in
  probe)
    log probe; timeout 180 python3 scripts/probe_cupti.py --out "$w/probe_cupti.json" > "$w/probe.txt" 2>&1; log "probe rc=$?";;
  cupti-raw)  # the raw CUPTI handover beside cupti-python's: records, checks, cost per record (about 2 minutes)
    log cupti-raw; timeout 150 python3 scripts/probe_cupti_raw.py --out "$w/probe_cupti_raw.json" \
      --budget ${CUPTI_RAW_BUDGET:-115} > "$w/cupti-raw.txt" 2>&1; log "cupti-raw rc=$?";;
  launch-time)  # kernels attributed by CUPTI's launch-side timestamps instead of events (about 2 minutes)
    log launch-time; timeout ${LAUNCH_TIMEOUT:-200} python3 scripts/probe_launch_time.py --out "$w/launch_time.json" ${LAUNCH_EXTRA:-} > "$w/launch-time.txt" 2>&1
    log "launch-time rc=$?";;
  tests)
    t=${TESTS_TIMEOUT:-360}; [ -n "${DEADLINE:-}" ] && t=$((DEADLINE - SECONDS))  # 39 tests: 220 s was too short
    log "tests (${t} s)"; BERT_RUNTIMES= timeout $t bash scripts/gpu_tests.sh "$w/tests" 2>&1 | quiet > "$w/tests.txt"; log "tests rc=${PIPESTATUS[0]}";;
  long)  # the kernel-clock check: a long GPU-paced capture (graph-broken BERT, batch 128) and each row's lead over its kernels
    log long; timeout ${LONG_TIMEOUT:-150} python3 -m trtprof capture --no-report --quiet -o "$w/long" examples/bert_cases.py breaks \
      --iters ${LONG_ITERS:-1500} --warmup 20 --batch 128 --seq 128 > "$w/long.txt" 2>&1; log "long rc=$?"
    timeout 60 python3 bench/clock_drift.py "$w/long" --json "$w/drift.json" > "$w/drift.txt" 2>&1; log "clock drift rc=$?"
    rm -f "$w/long/kernels.parquet" "$w"/long/*.arrows;;
  cudagraphs)
    mkdir -p "$w/cudagraphs"
    IFS=';' read -ra cg_cases <<< "${CG_CASES:-small 600 50;breaks 300 25}"
    for c in "${cg_cases[@]}"; do
      set -- $c
      log "cudagraphs $1"; timeout 300 python3 -m trtprof capture -o "$w/cudagraphs/$1-cpp" --cudagraphs "alternate:$3" \
        examples/bert_cases.py "$1" --iters "$2" 2>&1 | quiet > "$w/cudagraphs/$1-cpp.txt"
      log "cudagraphs $1 rc=${PIPESTATUS[0]}"
    done
    # the script's own enable_cudagraphs wrapper in blocks (whole-graph mode on a graph-broken model)
    IFS=';' read -ra wrap_cases <<< "${WRAP_CASES-breaks 300 25}"
    for c in "${wrap_cases[@]}"; do
      set -- $c
      log "cudagraphs wrapper $1"; timeout 300 python3 -m trtprof capture -o "$w/cudagraphs/$1-wrapper-cpp" \
        examples/bert_cases.py "$1" --iters "$2" --wrapper "$3" 2>&1 | quiet > "$w/cudagraphs/$1-wrapper-cpp.txt"
      log "cudagraphs wrapper $1 rc=${PIPESTATUS[0]}"
    done
    rm -f "$w"/cudagraphs/*/*.arrows;;
  python-only)
    log python-only; bash scripts/try_python_only.sh .tt213/torch_tensorrt_rtx-2.13.0-py.tgz "$w/python-only" > /dev/null 2>&1
    log "python-only rc=$?"; rm -f "$w"/python-only/python-only-cap/*.arrows;;
  bert)
    for rt in python cpp; do
      flag=""; [ "$rt" = python ] && flag="--python-runtime"
      log "bert $rt"; timeout 120 python3 -m trtprof capture -o "$w/bert-$rt" examples/bert_prealloc.py $flag \
        --iters 200 --warmup 20 2>&1 | quiet > "$w/bert-$rt.txt"
    done;;
  bench)
    log "bench cpp"; timeout 300 python3 bench/bench_overhead.py --runtime cpp --toggle --blocks 40 $BENCH_EXTRA --out "$w/bench" 2>&1 | quiet | tail -40 > "$w/bench-cpp.txt"
    log "bench python"; timeout 260 python3 bench/bench_overhead.py --runtime python --toggle --blocks 40 --out "$w/bench" 2>&1 | quiet | tail -40 > "$w/bench-python.txt";;
  bench-broken)
    log "bench broken"; timeout 400 python3 bench/bench_overhead.py --runtime cpp --graph-breaks --toggle --blocks 20 \
      --out "$w/bench" 2>&1 | quiet | tail -40 > "$w/bench-broken.txt";;
  goal)  # issue 22: full level (with and without kernels, and --no-brackets), every inference recorded, paired against no tool
    IFS=';' read -ra goal_cases <<< "${GOAL_CASES:-cpp 1000 150;python 1000 150;cpp 600 220 --graph-breaks;python 600 220 --graph-breaks}"
    for c in "${goal_cases[@]}"; do
      set -- $c
      log "goal $*"; timeout "$3" python3 bench/bench_overhead.py --goal --runtime "$1" --pairs "$2" ${4:-} \
        --out "$w/bench" 2>&1 | quiet | tail -60 > "$w/goal-$1${4:+-broken}.txt"; log "goal $1 ${4:-} rc=${PIPESTATUS[0]}"
    done;;
  goal-profile)  # issue 22: where a recorded inference's extra time goes, by function (cProfile, both arms)
    for rt in ${PROFILE_RT:-cpp python}; do
      log "goal profile $rt ${PROFILE_EXTRA:-}"; timeout ${PROFILE_TIMEOUT:-150} python3 bench/bench_overhead.py --goal --profile 40 \
        --runtime "$rt" --pairs ${PROFILE_PAIRS:-300} ${PROFILE_EXTRA:-} --out "$w/profile-$rt" 2>&1 | quiet | tail -100 > "$w/goal-profile-$rt.txt"
    done;;
  breakdown)  # issue 22: the recorded inference's cost with parts of the recording switched off, one run each
    for rt in ${BREAKDOWN_RT:-cpp}; do
      log "breakdown $rt ${BREAKDOWN_EXTRA:---graph-breaks}"; timeout ${BREAKDOWN_TIMEOUT:-200} python3 bench/bench_overhead.py --toggle \
        --modes none --blocks 2 --pairs ${BREAKDOWN_PAIRS:-300} --runtime "$rt" ${BREAKDOWN_EXTRA:---graph-breaks} \
        --toggle-configs ${BREAKDOWN_CONFIGS:-trtprof-minimal-nokernels-noalloc,trtprof-nokernels-noalloc,trtprof-nokernels,trtprof} \
        --out "$w/breakdown-$rt" 2>&1 | quiet | tail -60 > "$w/breakdown-$rt.txt"; log "breakdown $rt rc=${PIPESTATUS[0]}"
    done;;
  sample-log)  # --sample 10: the allocator log stopped between recorded inferences against left on, graph-broken BERT
    log "sample log"; timeout ${SL_TIMEOUT:-240} python3 bench/bench_overhead.py --toggle --modes none --blocks 2 \
      --pairs ${SL_PAIRS:-400} --runtime cpp --graph-breaks --toggle-configs trtprof-nokernels-s10,trtprof-nokernels-s10-logalways \
      --out "$w/sample-log" 2>&1 | quiet | tail -40 > "$w/sample-log.txt"; log "sample log rc=${PIPESTATUS[0]}";;
  hooks)
    log hooks; timeout 200 python3 bench/bench_hooks.py --out "$w/bench" 2>&1 | quiet > "$w/bench-hooks.txt";;
  cases)
    IFS=';' read -ra case_list <<< "${CASES:-small 600 50;breaks 300 25;shapes 600 50}"
    for rt in ${CASES_RT:-cpp python}; do
      flag=""; [ "$rt" = python ] && flag="--python-runtime"
      for c in "${case_list[@]}"; do
        set -- $c
        log "case $1 $rt"; timeout 200 python3 -m trtprof capture -o "$w/cases/$1-$rt" --prealloc "alternate:$3" \
          examples/bert_cases.py "$1" --iters "$2" $flag 2>&1 | quiet > "$w/cases/$1-$rt.txt"
      done
    done;;
  kernel-acc)
    log "kernel accuracy"; timeout ${KACC_TIMEOUT:-560} python3 bench/kernel_accuracy.py --out "$w/kernel-acc" --timeout ${KACC_RUN_TIMEOUT:-130} --cases ${KACC_CASES:-small breaks} ${KACC_EXTRA:-} 2>&1 | quiet > "$w/kernel-accuracy.txt"
    log "kernel accuracy rc=${PIPESTATUS[0]}"; find "$w/kernel-acc" \( -name '*.sqlite' -o -name '*.nsys-rep' -o -name 'timeline.parquet' -o -name 'kernels.parquet' \) -delete;;
  bench-kernels)
    log "bench kernels"; timeout 300 python3 bench/bench_overhead.py --runtime cpp --toggle --blocks 16 \
      --toggle-configs trtprof,trtprof-nokernels,trtprof-s10,trtprof-nokernels-s10 --modes none,trtprof,trtprof-s10,torch.profiler \
      --nsys --out "$w/bench" 2>&1 | quiet | tail -40 > "$w/bench-kernels.txt";;
  bench-kernels-broken)
    log "bench kernels broken"; timeout ${BKB_TIMEOUT:-300} python3 bench/bench_overhead.py --runtime cpp --graph-breaks --toggle --blocks ${BKB_BLOCKS:-8} \
      --toggle-configs trtprof,trtprof-nokernels,trtprof-s10,trtprof-nokernels-s10 --modes none,trtprof,trtprof-s10,torch.profiler \
      --nsys --out "$w/bench" 2>&1 | quiet | tail -40 > "$w/bench-kernels-broken.txt";;
  nsys-acc)
    log "nsys accuracy"; timeout 590 python3 bench/nsys_accuracy.py --out "$w/nsys-acc" --timeout 280 2>&1 | quiet > "$w/nsys-accuracy.txt"
    log "nsys accuracy rc=${PIPESTATUS[0]}"; find "$w/nsys-acc" \( -name '*.sqlite' -o -name '*.nsys-rep' \) -delete;;
  profile)
    IFS=';' read -ra configs <<< "${PROFILE_CONFIGS:---runtime cpp;--runtime python;--runtime cpp --graph-breaks --level minimal}"
    for a in "${configs[@]}"; do
      log "profile $a"; timeout 150 python3 bench/profile_capture.py $a 2>&1 | quiet >> "$w/profile.txt"
    done;;
  ranks|ranks2)
    # the tutorial's BERT under torchrun, one capture per rank into one folder, the merged report, the
    # Perfetto trace and the checks of issue 24 (devices, straggler against latencies, one clock)
    sync=gloo; [ "$s" = ranks2 ] && sync=nccl
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    nvidia-smi -L > "$w/$s.txt" 2>&1
    for rt in ${RANKS_RT:-cpp python}; do
      flag=""; [ "$rt" = python ] && flag="--python-runtime"
      log "$s $rt"; timeout ${RANKS_TIMEOUT:-300} python3 -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m trtprof capture -o "$w/$s-$rt" examples/ranks_bert.py --sync $sync --iters ${RANKS_ITERS:-200} $flag \
        2>&1 | quiet >> "$w/$s.txt"; log "$s $rt rc=${PIPESTATUS[0]}"
      python3 -m trtprof report "$w/$s-$rt" >> "$w/$s.txt" 2>&1
      python3 -m trtprof export "$w/$s-$rt" -o "$w/$s-$rt/trace.json" >> "$w/$s.txt" 2>&1
      python3 -m trtprof compare "$w/$s-$rt/rank0" "$w/$s-$rt/rank1" --no-html >> "$w/$s.txt" 2>&1
      python3 scripts/check_ranks.py "$w/$s-$rt" --out "$w/$s-$rt/checks.json" > /dev/null 2>> "$w/$s.txt"
      grep -A3 '"lockstep"' "$w/$s-$rt/checks.json" >> "$w/$s.txt" 2>/dev/null
    done;;
  nsys)
    if command -v nsys >/dev/null; then
      log nsys
      timeout 200 nsys profile -t cuda,nvtx --force-overwrite true -o "$w/two" python3 -m trtprof capture -o "$w/two-cap" \
        support/gpu/two_engines.py python "$w/two-sched.json" 2>&1 | quiet > "$w/nsys.txt"
      timeout 100 nsys export --type sqlite --force-overwrite true -o "$w/two.sqlite" "$w/two.nsys-rep" >> "$w/nsys.txt" 2>&1
      python3 -m trtprof nsys-import "$w/two-cap" "$w/two.sqlite" >> "$w/nsys.txt" 2>&1
      ls -la "$w" >> "$w/nsys.txt"
    else log "no nsys"; fi;;
  esac
  # after every step: what is done comes back even when a later step runs past the device's limit
  tar czf "$out/gpu-results.tar.gz" -C "$(dirname "$w")" res
done
ls -la "$out"

#!/usr/bin/env bash
# Fuzz the runtime's loader and forward pass with libFuzzer under ASan + UBSan.
#
# Usage: kernels/runtime/fuzz/run.sh [RUNS]   (default 1000000 executions; CI runs a short pass)
# Needs clang with libFuzzer (Debian: clang-14 and libclang-rt-14-dev; CLANG picks the binary).
# The seed corpus (corpus/) holds small exported models (write_corpus.py makes them); new inputs
# the fuzzer finds go to build/fuzz/corpus, crashes to build/fuzz/ with the reproducer's name.
set -euo pipefail
cd "$(dirname "$0")/../../.."

RUNS=${1:-1000000}
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
[ -n "$CLANG" ] || { echo "fuzz: no clang (install clang-14 and libclang-rt-14-dev)" >&2; exit 1; }
OUT=build/fuzz
mkdir -p "$OUT/corpus"
# The SIMD path where the CPU has it: its border handling is what an odd shape could break.
SIMD=""
grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo &&
  SIMD="-mavx2 -mfma -mf16c"
echo "fuzz: building with ${SIMD:-the scalar path}"
"$CLANG" -std=c99 -g -O1 $SIMD -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Ikernels/runtime kernels/runtime/fuzz/fuzz_load.c kernels/runtime/meshfit_runtime.c -lm -o "$OUT/fuzz_load"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
"$OUT/fuzz_load" -runs="$RUNS" -max_len=262144 -print_final_stats=1 -artifact_prefix="$OUT/" \
  "$OUT/corpus" kernels/runtime/fuzz/corpus 2>&1 | tail -n 25
echo "fuzz: $RUNS executions, no crash"

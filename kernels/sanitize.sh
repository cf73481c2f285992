#!/usr/bin/env bash
# The native kernels under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Builds kernels/*.cc (and the C runtime, kernels/runtime) with -fsanitize=address,undefined (and
# -Wall -Wextra -Werror), loads those libraries instead of the installed ones (MESHFIT_NATIVE_LIB,
# read by meshfit/render/_native.py, and MESHFIT_RUNTIME_LIB, by meshfit/export/runtime.py;
# libasan and libubsan preloaded into Python), and runs the render tests, the native-gradient
# tests and the hostile-input property test against it, with tile lists capped at 2048 pairs so
# that small renders take visibility's one-pass path and larger ones its chunked binning; then the
# runtime's tests (tests/test_export.py). Any sanitizer report aborts the run.
#
# Usage: kernels/sanitize.sh [--full] [pytest args]   (from an activated environment with
# meshfit's dev extra; CXX picks the compiler, g++ by default; MESHFIT_HOSTILE_EXAMPLES the
# examples per property). By default it runs the render tests that reach the kernels; --full
# runs all of tests/test_render.py (about 12 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CXX=${CXX:-g++}
OUT=build/sanitize
mkdir -p "$OUT"
LIB="$PWD/$OUT/libmeshfit_kernels_asan.so"
INCLUDE=$(python -c "import jax; print(jax.ffi.include_dir())")
JAXLIB=$(python -c "import importlib.metadata as m; print(m.version('jaxlib'))")

echo "building $LIB with $CXX"
"$CXX" -std=c++17 -O1 -g -fno-omit-frame-pointer -ffp-contract=off -fPIC -shared \
  -Wall -Wextra -Werror -fvisibility=hidden -fvisibility-inlines-hidden \
  -fsanitize=address,undefined -fno-sanitize-recover=all \
  -isystem "$INCLUDE" -DMESHFIT_JAXLIB_VERSION="\"$JAXLIB\"" \
  kernels/rasterize.cc kernels/interpolate.cc kernels/antialias.cc kernels/shade.cc \
  -Wl,--version-script=kernels/exports.map -pthread -o "$LIB"
nm -D "$LIB" | grep __asan_ >/dev/null || { echo "sanitize.sh: $LIB is not instrumented" >&2; exit 1; }
# The C runtime for exported models (kernels/runtime), C99 and pedantic.
CC=${CC:-gcc}
RUNTIME="$PWD/$OUT/libmeshfit_runtime_asan.so"
echo "building $RUNTIME with $CC"
"$CC" -std=c99 -O1 -g -fno-omit-frame-pointer -fPIC -shared -Wall -Wextra -Wpedantic -Werror \
  -fsanitize=address,undefined -fno-sanitize-recover=all \
  kernels/runtime/meshfit_runtime.c -lm -Wl,--version-script=kernels/runtime/exports.map -o "$RUNTIME"

preload=""
for rt in libasan.so libubsan.so; do
  path=$("$CXX" -print-file-name="$rt")
  [ -f "$path" ] || { echo "sanitize.sh: $CXX has no $rt" >&2; exit 1; }
  preload="$preload $path"
done

export MESHFIT_NATIVE_LIB="$LIB"
export MESHFIT_RUNTIME_LIB="$RUNTIME"
export MESHFIT_STRICT_TESTS=1          # an unloadable library fails, never skips
export MESHFIT_MAX_TILE_PAIRS=2048     # both visibility paths: one pass (small) and chunked (large)
export MESHFIT_HOSTILE_EXAMPLES=${MESHFIT_HOSTILE_EXAMPLES:-40}
# Leak checking is off: Python and jaxlib keep allocations alive until exit by design (the
# kernels own memory only through RAII containers). Everything else aborts on the first report.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

LD_PRELOAD="${preload# }" python - <<'PY'
from meshfit.render import _native
info = _native.build_info()
assert info["loaded"] and info["library"].endswith("_asan.so"), info
print("sanitized kernels loaded:", info["library"])
PY
SELECT=(-k "hostile or clamps or kernels or vjp or native or identical or reference or near_plane or fill_rule or bad or aligned or degenerate or fused or colour_kernel")
if [ "${1:-}" = "--full" ]; then SELECT=(); shift; fi
LD_PRELOAD="${preload# }" python -m pytest -p no:cacheprovider -q -n 2 \
  tests/test_kernels_hostile.py tests/test_kernels_gradients.py tests/test_render.py tests/test_appearance.py \
  "${SELECT[@]}" "$@"
# The runtime's loader and forward pass: C against JAX, hostile and mutated model files.
# (Only the tests that call the runtime in-process: the preload would also reach node, cc and cmake.)
LD_PRELOAD="${preload# }" python -m pytest -p no:cacheprovider -q -n 2 tests/test_export.py \
  -k "c_runtime or quantized or hostile or mutated" "$@"
echo "sanitize.sh: no sanitizer reports"

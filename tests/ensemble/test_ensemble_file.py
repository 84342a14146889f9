"""The ensemble file (an .eb container of member .eb files, eightbit/ensemble.py) is attacked like
a model file: every malformed field is a ValueError (ModelFileError) naming it, and fuzzed files
opened with eb.load in the sandboxed child of tests/model/_hostile.py (address-space cap, timeout,
restart after a crash) either load and run or raise a ValueError, never crash or hang."""
import copy
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import eightbit as eb
from eightbit.model import file_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
import _hostile as H  # noqa: E402

EXAMPLES = int(os.environ.get("EIGHTBIT_FUZZ_EXAMPLES", "0"))


def tree_of(members, combine="vote", weights=None, names=None):
    return {"format": "eightbit-ensemble", "version": 1, "producer": "test", "combine": combine,
            "weights": weights, "names": names or [f"m{i}" for i in range(len(members))],
            "members": [np.frombuffer(file_format.encode(m.plan), np.uint8) for m in members]}


def load_bytes(tmp_path, buf):
    path = tmp_path / "e.ebe"
    path.write_bytes(buf)
    return eb.load(path)


def test_the_test_tree_is_what_save_writes(members, tmp_path, x):
    ens = load_bytes(tmp_path, H.encode_tree(tree_of(members, "mean", [1.0, 2.0, 3.0])))
    ref = eb.Ensemble(members, "mean", weights=[1, 2, 3])
    np.testing.assert_array_equal(ens(x), ref(x))
    ref.save(tmp_path / "r.ebe")
    assert file_format.read_tree(tmp_path / "r.ebe")[1].keys() == tree_of(members).keys()


def _member(tree, i, value):
    tree["members"][i] = value


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update(version=2), "version 2 is not supported"),
    (lambda t: t.update(version=True), "version True"),
    (lambda t: t.pop("version"), "version None"),
    (lambda t: t.update(combine="median"), "'combine' must be one of"),
    (lambda t: t.update(combine=None), "'combine' must be one of"),
    (lambda t: t.update(members=[]), "'members' must be a list of 1 to 1024 member files, got 0 entries"),
    (lambda t: t.update(members="x"), "'members' must be a list"),
    (lambda t: t.update(members=t["members"] * 400), "got 1200 entries"),
    (lambda t: t.update(names=["a", "b"]), "'names' must be 3 strings"),
    (lambda t: t.update(names=["a", "b", 3]), "'names' must be 3 strings"),
    (lambda t: t.update(names=["a", "a", "b"]), "names: expected unique names"),
    (lambda t: t.update(weights=[1.0, 2.0]), "weights: expected 3 numbers"),
    (lambda t: t.update(weights=[1.0, -2.0, 1.0]), "weights: expected finite numbers >= 0"),
    (lambda t: t.update(weights=[float("nan"), 1.0, 1.0]), "finite"),
    (lambda t: t.update(weights=["1", 1.0, 1.0]), "'weights' must be None or a list of numbers"),
    (lambda t: t.update(weights=np.ones(3, np.float32)), "'weights' must be None or a list of numbers"),
    (lambda t: _member(t, 1, np.zeros((2, 8), np.uint8)), r"members\[1\] must be a 1-D uint8 array"),
    (lambda t: _member(t, 0, t["members"][0].astype(np.int8)), r"members\[0\] must be a 1-D uint8 array"),
    (lambda t: _member(t, 2, t["members"][2][:100]), r"members\[2\]: "),
    (lambda t: _member(t, 2, np.zeros(0, np.uint8)), r"members\[2\]: "),
    (lambda t: _member(t, 1, np.frombuffer(H.encode_tree({"format": "eightbit-ensemble"}), np.uint8)),
     r"members\[1\]: not an eightbit plan"),
])
def test_malformed_fields_are_refused(members, tmp_path, change, match):
    tree = tree_of(members)
    change(tree)
    with pytest.raises(file_format.ModelFileError, match=match):
        load_bytes(tmp_path, H.encode_tree(tree))


def test_a_corrupted_member_names_the_member(members, tmp_path):
    tree = tree_of(members)
    blob = tree["members"][1].copy()
    blob[len(blob) // 2] ^= 0x40  # inside the member's own data section: its CRC no longer matches
    tree["members"][1] = blob
    with pytest.raises(file_format.ModelFileError, match=r"ensemble file: members\[1\]: checksum mismatch"):
        load_bytes(tmp_path, H.encode_tree(tree))


def test_members_that_do_not_fit_are_refused(members, tmp_path):
    from _ensemble_models import calib, mlp
    four = eb.quantize(mlp(5, classes=4), calib(5))
    with pytest.raises(file_format.ModelFileError, match=r"ensemble file: members\[1\]: output 0"):
        load_bytes(tmp_path, H.encode_tree(tree_of([members[0], four])))


def test_every_truncation_is_refused(members, tmp_path):
    buf = H.encode_tree(tree_of(members))
    for cut in sorted({1, 8, 63, 64, 65, 200} | set(range(0, len(buf), max(1, len(buf) // 40)))):
        if cut >= len(buf):
            continue
        with pytest.raises(ValueError):
            load_bytes(tmp_path, buf[:cut])


def test_member_arrays_that_lie_about_their_offsets_are_refused(members, tmp_path):
    tree = tree_of(members)
    n = tree["members"][0].size
    tree["members"][0] = H.RawArray(1, (n,), offset=2**40)                      # past the data section
    with pytest.raises(ValueError):
        load_bytes(tmp_path, H.encode_tree(tree))
    tree = tree_of(members)
    tree["members"][2] = H.RawArray(1, (n,), target=tree["members"][0], delta=64)  # overlaps member 0
    with pytest.raises(ValueError):
        load_bytes(tmp_path, H.encode_tree(tree))


# ---- fuzz, in the sandbox -----------------------------------------------------------------------

def _settings(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, database=None, derandomize=not EXAMPLES,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def _structural(tree, originals, d):
    """One hostile change of the ensemble tree: its fields, a member's bytes or its array entry."""
    key = d.choice(["format", "version", "combine", "weights", "names", "members", "member", "member_raw"])
    if key.startswith("member_") or key == "member":
        if not isinstance(tree["members"], list) or len(tree["members"]) != len(originals):
            tree["members"] = list(originals)  # an earlier change replaced the list: start from the members again
    if key == "member":
        i = d.index(len(tree["members"]))
        member_buf, what = H.mutate_bytes(originals[i].tobytes(), d)
        tree["members"][i] = np.frombuffer(member_buf, np.uint8)
        return f"members[{i}]: {what}"
    if key == "member_raw":
        i = d.index(len(tree["members"]))
        n = originals[i].size
        raw = H.RawArray(d.choice([1, 2, 3, 4, 0, 9]), (d.choice([n, n + 1, n - 1, 2**62, 0]),),
                         target=originals[d.index(len(originals))], delta=d.choice([0, 64, -64, 1]))
        tree["members"][i] = raw
        return f"members[{i}] = {raw!r}"
    if key == "members":
        value = d.choice([[], originals * 3, originals[:1], H.WEIRD[d.index(len(H.WEIRD))]])
    else:
        value = H.WEIRD[d.index(len(H.WEIRD))]
    tree[key] = value
    return f"{key} = {repr(value)[:80]}"


def test_fuzzed_ensemble_files_load_run_or_raise_value_error(members):
    box = H.Sandbox()
    base = tree_of(members, "mean", [1.0, 2.0, 0.5])
    failures, outcomes = [], {}

    @_settings(250)
    @given(st.data())
    def fuzz(data):
        d = H.Draw(data)
        tree = copy.copy(base)
        tree["members"] = list(base["members"])
        what = [_structural(tree, base["members"], d) for _ in range(d.int(0, 2))]
        buf = H.encode_tree(tree)
        if not what or d.bool():
            buf, w = H.mutate_bytes(buf, d)
            what.append(f"container: {w}")
        path = box.dir / f"ens-{len(outcomes)}-{sum(outcomes.values())}.ebe"
        path.write_bytes(buf)
        res = box.run(path, [("x", [d.choice([1, 2]), 12])])
        path.unlink()
        outcomes[res.get("outcome")] = outcomes.get(res.get("outcome"), 0) + 1
        why = H.verdict(res)
        if why is not None:
            repro = H.save_repro(buf, "ensemble", what, res, [("x", [1, 12])])
            failures.append(f"{why}\n    {repro}\n    " + "\n    ".join(what))

    try:
        fuzz()
    finally:
        box.close()
    print(outcomes)
    assert not failures, f"{len(failures)} failures (outcomes {outcomes}):\n" + "\n".join(failures[:20])
    assert outcomes.get("ran", 0) > 0 and outcomes.get("raised", 0) > 0, outcomes

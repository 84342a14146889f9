"""QAT under DistributedDataParallel (gloo, CPU): two processes each train ResNetTiny on their half
of every global batch; both ranks must hold identical quantization parameters and export the same
int8 model, and that model must match a single process trained on the full batches.

The ranks are this file run as a script (``python test_qat_distributed.py RANK WORLD RENDEZVOUS
OUT``): each trains the scenarios below and saves what the tests compare to OUT; the single-process
reference runs in the test process meanwhile.

    frozen_bn         BatchNorm frozen, eightbit.torch.distributed.ddp (no per-forward buffer
                      broadcast): only the observers' own all-reduce keeps the ranges equal (also
                      run in one process on the full batches)
    train_bn          BatchNorm training, ddp(): the ranks' running statistics differ until
                      sync_quantization averages them
    train_bn_default  BatchNorm training, DDP's default per-forward buffer broadcast: they differ
                      all the same (each forward updates them locally after the broadcast)
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

STEPS, BATCH = 6, 16
SCENARIOS = {"frozen_bn": (False, False), "train_bn": (True, False), "train_bn_default": (True, True)}
#              name: (BatchNorm trains, DDP's default buffer broadcast)
BN_CONVS = {"stem.0", "layer1.conv1", "layer1.conv2", "layer2.conv1", "layer2.conv2", "layer2.shortcut.0"}


# ------------------------------------------------------------------------------------ the worker

def global_batches():
    """The same global batches (inputs, class labels) in every process."""
    g = torch.Generator().manual_seed(123)
    for _ in range(STEPS):
        yield torch.randn(BATCH, 3, 8, 8, generator=g) * 2.0 + 0.5, torch.randint(0, 10, (BATCH,), generator=g)


def eval_inputs():
    return torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * 2.0 + 0.5


def local_batches(rank: int, world: int):
    """This rank's share of each global batch."""
    share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    return ((x[share], y[share]) for x, y in global_batches())


def qat_model(train_bn: bool):
    """The prepared ResNetTiny, the same in every process (same seed)."""
    from _qat import ResNetTiny
    from eightbit.torch import ActivationQuant, QATConfig, freeze_bn, prepare_qat

    torch.manual_seed(0)
    qat = prepare_qat(ResNetTiny(), (eval_inputs()[:2],), QATConfig(activation=ActivationQuant(momentum=0.1)))
    if not train_bn:
        freeze_bn(qat)
    return qat


def optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def train(rank: int, world: int, train_bn: bool, default_ddp: bool):
    """The QAT model (DDP-wrapped when world > 1) after STEPS steps on this rank's share of each
    batch, and the trajectory: (weights, quantization state) after each step."""
    import torch.nn.functional as F
    from eightbit.torch.distributed import ddp, quantization_state

    qat = qat_model(train_bn)
    model = qat if world == 1 else torch.nn.parallel.DistributedDataParallel(qat) if default_ddp else ddp(qat)
    opt = optimizer(model)
    model.train()
    trajectory = []
    for x, y in local_batches(rank, world):
        loss = F.cross_entropy(model(x), y)     # a mean: DDP's average is the full batch's
        opt.zero_grad()
        loss.backward()
        opt.step()
        trajectory.append((weights(qat), quantization_state(qat)))
    return model, trajectory


def weights(qat) -> dict:
    return {k: v.detach().clone() for k, v in qat.named_parameters()}


def scenario_result(model, trajectory) -> dict:
    """What the tests compare: the trajectory, the quantization state before and after
    sync_quantization, the weights, the int8 model's outputs and output codes on fixed inputs."""
    from eightbit.torch import convert
    from eightbit.torch.distributed import quantization_spread, quantization_state, sync_quantization

    qat = getattr(model, "module", model)
    result = {"trajectory": trajectory, "before": quantization_state(model)}
    sync_quantization(model)
    qm = convert(model)
    x = eval_inputs()
    out = torch.from_numpy(qm(x.numpy()))
    qat.eval()
    with torch.no_grad():
        assert torch.equal(out, qat(x)), "the engine's output differs from the QAT eval forward"
    scale, zp = qat.fc.output_quant.qparams()
    return {**result, "state": quantization_state(model), "spread": quantization_spread(model),
            "weights": weights(qat),
            "out": out, "codes": torch.round(out / scale) + zp}


def sync_check(model, rank: int) -> dict:
    """Rank 1 perturbs an observer; the spread shows it, check_quantization_synced raises, and
    sync_quantization repairs it."""
    from eightbit.torch.distributed import check_quantization_synced, quantization_spread, sync_quantization

    qat = model.module
    if rank == 1:
        qat.x_quant.max_val += 1.0
        qat.x_quant.set_range(float(qat.x_quant.min_val), float(qat.x_quant.max_val))
    before = quantization_spread(model)
    try:
        check_quantization_synced(model)
        raised = False
    except RuntimeError:
        raised = True
    sync_quantization(model)
    return {"before": before, "raised": raised, "after": quantization_spread(model)}


def online_exports(rank: int, world: int) -> dict:
    """OnlineQAT on ddp(model) with BatchNorm training, exporting every 3 batches (each export
    syncs the ranks first): the int8 outputs of every export on fixed inputs."""
    import torch.nn.functional as F
    from eightbit.torch.distributed import ddp
    from eightbit.torch.online import OnlineQAT

    outs = []
    model = ddp(qat_model(train_bn=True))
    online = OnlineQAT(model, optimizer(model), F.cross_entropy, export_every=3,
                       on_export=lambda qm, batch: outs.append(torch.from_numpy(qm(eval_inputs().numpy()))))
    online.run(local_batches(rank, world))
    return {"outs": outs, "batches": online.batches}


def scenarios(rank: int, world: int) -> dict:
    """Every scenario's results in this process (one process: frozen_bn only, the reference)."""
    results = {}
    for name, (train_bn, default_ddp) in SCENARIOS.items():
        if world == 1 and name != "frozen_bn":
            continue
        model, trajectory = train(rank, world, train_bn, default_ddp)
        results[name] = scenario_result(model, trajectory)
        if world > 1 and name == "frozen_bn":
            results["sync"] = sync_check(model, rank)
    if world > 1:
        results["online"] = online_exports(rank, world)
    return results


def worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    """One rank: join the gloo group, run the scenarios, save the results to OUT/rank{rank}.pt."""
    import datetime
    torch.set_num_threads(1)     # the processes share the machine's cores
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        results = scenarios(rank, world)
    finally:
        torch.distributed.destroy_process_group()
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


# ------------------------------------------------------------------------------------ the tests

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"rank0", "rank1", "single"}: the two ranks' results (worker processes) and, computed here
    meanwhile, those of one process on the full batches."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    tmp = tmp_path_factory.mktemp("ddp")
    rendezvous = (tmp / "rendezvous").as_uri()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))   # eightbit as pytest sees it
    logs = [open(tmp / f"rank{r}.log", "w+") for r in range(2)]
    procs = [subprocess.Popen([sys.executable, __file__, str(r), "2", rendezvous, str(tmp)],
                              stdout=logs[r], stderr=subprocess.STDOUT, env=env) for r in range(2)]
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng():
            torch.set_num_threads(1)
            single = scenarios(0, 1)
        for p in procs:
            p.wait(timeout=180)
    finally:
        torch.set_num_threads(threads)
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, log) in enumerate(zip(procs, logs)):
        log.seek(0)
        assert p.returncode == 0, f"rank {r} failed:\n{log.read()[-3000:]}"
        log.close()
    return {"rank0": torch.load(tmp / "rank0.pt", weights_only=False),
            "rank1": torch.load(tmp / "rank1.pt", weights_only=False), "single": single}


def _differing(a: dict, b: dict) -> list:
    assert a.keys() == b.keys()
    return sorted(k for k in a if not torch.equal(a[k], b[k]))


def test_observers_alone_keep_ranks_identical(runs):
    """BatchNorm frozen, no buffer broadcast: every quantization parameter and weight is equal on
    both ranks before any sync, and stays so (the sync changes nothing)."""
    r0, r1 = runs["rank0"]["frozen_bn"], runs["rank1"]["frozen_bn"]
    assert len(r0["state"]) > 40
    assert _differing(r0["before"], r1["before"]) == []
    assert _differing(r0["before"], r0["state"]) == []
    assert _differing(r0["weights"], r1["weights"]) == []


@pytest.mark.parametrize("scenario", ["train_bn", "train_bn_default"])
def test_training_batchnorm_needs_sync(runs, scenario):
    """BatchNorm training: the observers' ranges agree, but each rank's running statistics follow
    its own half batch (with DDP's buffer broadcast too: the last forward updates them locally),
    so the folded weight scales of exactly the BatchNorm convs differ until sync_quantization."""
    r0, r1 = runs["rank0"][scenario], runs["rank1"][scenario]
    differing = _differing(r0["before"], r1["before"])
    assert {k.rsplit(".", 1)[0] for k in differing} == BN_CONVS
    assert all(k.endswith(".weight_scale") for k in differing)
    assert _differing(r0["state"], r1["state"]) == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ranks_export_the_same_int8_model(runs, scenario):
    r0, r1 = runs["rank0"][scenario], runs["rank1"][scenario]
    assert set(r0["spread"].values()) == {0.0}
    assert _differing(r0["weights"], r1["weights"]) == []
    assert torch.equal(r0["out"], r1["out"])
    assert r0["out"].std() > 0


def test_online_qat_exports_agree_across_ranks(runs):
    r0, r1 = runs["rank0"]["online"], runs["rank1"]["online"]
    assert r0["batches"] == r1["batches"] == STEPS
    assert len(r0["outs"]) == len(r1["outs"]) == STEPS // 3
    assert all(torch.equal(a, b) for a, b in zip(r0["outs"], r1["outs"]))
    assert not torch.equal(r0["outs"][0], r0["outs"][1])      # the second export learned more


def test_sync_quantization_repairs_a_divergence(runs):
    for rank in ("rank0", "rank1"):
        sync = runs[rank]["sync"]
        assert sync["before"]["x_quant.max_val"] == pytest.approx(1.0)
        assert sync["before"]["x_quant.scale"] > 0 and sync["raised"]
        assert set(sync["after"].values()) == {0.0}


def _max_diff(a: dict, b: dict, relative=False) -> float:
    """The largest |a - b| over all entries (relative to |b|: quantization parameters)."""
    return max(float(((a[k] - b[k]).abs() / (b[k].abs().clamp_min(1e-6) if relative else 1)).max()) for k in a)


def test_ddp_matches_single_process_to_rounding_at_first(runs):
    """Two ranks on half batches vs one process on the full batches (BatchNorm frozen): the same
    computation but for float summation order (DDP averages two half-batch gradients), so for the
    first steps the weights agree to float rounding and the quantization parameters to < 1e-6
    relative (measured, torch 2.13 CPU: <= 6e-8 and <= 1e-7 for 4 steps). The graph input's range
    is the same data: exactly equal at every step."""
    ddp, single = runs["rank0"]["frozen_bn"]["trajectory"], runs["single"]["frozen_bn"]["trajectory"]
    assert len(ddp) == len(single) == STEPS
    for (w2, q2), (w1, q1) in zip(ddp[:3], single[:3]):
        assert _max_diff(w2, w1) < 1e-6
        assert _max_diff(q2, q1, relative=True) < 1e-6
    for (_, q2), (_, q1) in zip(ddp, single):
        for k in ("x_quant.min_val", "x_quant.max_val", "x_quant.scale", "x_quant.zero_point"):
            assert torch.equal(q2[k], q1[k]), k


def test_ddp_matches_single_process_within_tolerance(runs):
    """Once a value crosses a rounding boundary of a fake quantizer in one run and not the other
    (here from the 5th step), the straight-through gradients differ by a quantization step's
    effect, and the runs separate further. After STEPS = 6 steps (measured, torch 2.13 CPU:
    weights 2.1e-4, quantization parameters 3.5e-3 relative, all the int8 output codes identical;
    with an earlier observer, 96% identical and the others one code apart) the tolerance: weights
    < 1e-3, quantization parameters < 2e-2 relative, >= 90% identical output codes, none more than
    2 codes apart."""
    ddp, single = runs["rank0"]["frozen_bn"], runs["single"]["frozen_bn"]
    w_diff = _max_diff(ddp["weights"], single["weights"])
    q_rel = _max_diff(ddp["state"], single["state"], relative=True)
    code_diff = (ddp["codes"] - single["codes"]).abs()
    same = float((code_diff == 0).float().mean())
    print(f"\nDDP (2 ranks) vs single process after {STEPS} steps: weights max |diff| {w_diff:.3g}, "
          f"quantization parameters max relative diff {q_rel:.3g}, output codes identical {same:.4f} "
          f"(max diff {float(code_diff.max()):.0f}), outputs max |diff| "
          f"{float((ddp['out'] - single['out']).abs().max()):.3g}")
    assert w_diff < 1e-3
    assert q_rel < 2e-2
    assert same >= 0.9
    assert float(code_diff.max()) <= 2


def test_single_process_helpers_are_trivial():
    """Outside torch.distributed the spread is all zeros and sync is a no-op."""
    from _qat import DigitsCNN
    from eightbit.torch import prepare_qat
    from eightbit.torch.distributed import check_quantization_synced, quantization_spread, quantization_state, \
        sync_quantization

    model = prepare_qat(DigitsCNN(), (torch.zeros(2, 1, 8, 8),))
    model.train()
    model(torch.rand(4, 1, 8, 8))
    state = quantization_state(model)
    assert set(state) >= {"x_quant.scale", "x_quant.min_val", "conv1.output_quant.max_val", "conv1.weight_scale"}
    assert state["conv1.weight_scale"].shape == (16,)
    lo, hi = min(float(model.x_quant.min_val), 0.0), max(float(model.x_quant.max_val), 0.0)
    assert float(state["x_quant.scale"]) == pytest.approx((hi - lo) / 255)
    assert set(quantization_spread(model).values()) == {0.0}
    sync_quantization(model)
    check_quantization_synced(model)
    assert _differing(quantization_state(model), state) == []


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    sys.exit(0)

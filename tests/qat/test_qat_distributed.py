"""QAT under DistributedDataParallel (gloo, CPU): two processes each train ResNetTiny on their half
of every global batch; both ranks must hold identical quantization parameters and export the same
int8 model, and that model must match a single process trained on the full batches.

The workers are this file run as a script (``python test_qat_distributed.py TAG RANK WORLD
RENDEZVOUS OUT``): each trains the scenarios below and saves what the tests compare to OUT.

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


def train(rank: int, world: int, train_bn: bool, default_ddp: bool):
    """The QAT model (DDP-wrapped when world > 1) after STEPS steps on this rank's share of each batch."""
    import torch.nn.functional as F
    from _qat import ResNetTiny
    from eightbit.torch import ActivationQuant, QATConfig, freeze_bn, prepare_qat
    from eightbit.torch.distributed import ddp

    torch.manual_seed(0)
    qat = prepare_qat(ResNetTiny(), (eval_inputs()[:2],), QATConfig(activation=ActivationQuant(momentum=0.1)))
    if not train_bn:
        freeze_bn(qat)
    model = qat if world == 1 else torch.nn.parallel.DistributedDataParallel(qat) if default_ddp else ddp(qat)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    model.train()
    for x, y in global_batches():
        loss = F.cross_entropy(model(x[share]), y[share])     # a mean: DDP's average is the full batch's
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def scenario_result(model) -> dict:
    """What the tests compare: the quantization state before and after sync_quantization, the
    weights, the int8 model's outputs and output codes on fixed inputs."""
    from eightbit.torch import convert
    from eightbit.torch.distributed import quantization_spread, quantization_state, sync_quantization

    qat = getattr(model, "module", model)
    result = {"before": quantization_state(model)}
    sync_quantization(model)
    qm = convert(model)
    x = eval_inputs()
    out = torch.from_numpy(qm(x.numpy()))
    qat.eval()
    with torch.no_grad():
        assert torch.equal(out, qat(x)), "the engine's output differs from the QAT eval forward"
    scale, zp = qat.fc.output_quant.qparams()
    return {**result, "state": quantization_state(model), "spread": quantization_spread(model),
            "weights": {k: v.detach().clone() for k, v in qat.named_parameters()},
            "out": out, "codes": torch.round(out / scale) + zp}


def sync_check(model, rank: int) -> dict:
    """Rank 1 perturbs an observer; the spread shows it, check_quantization_synced raises, and
    sync_quantization repairs it."""
    from eightbit.torch.distributed import check_quantization_synced, quantization_spread, sync_quantization

    qat = model.module
    if rank == 1:
        qat.x_quant.set_range(float(qat.x_quant.min_val), float(qat.x_quant.max_val) + 1.0)
    before = quantization_spread(model)
    try:
        check_quantization_synced(model)
        raised = False
    except RuntimeError:
        raised = True
    sync_quantization(model)
    return {"before": before, "raised": raised, "after": quantization_spread(model)}


def worker(tag: str, rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)     # three processes share the machine's cores
    results = {}
    if world > 1:
        import datetime
        torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world,
                                             timeout=datetime.timedelta(seconds=60))
    try:
        for name, (train_bn, default_ddp) in SCENARIOS.items():
            if world == 1 and name != "frozen_bn":
                continue
            model = train(rank, world, train_bn, default_ddp)
            results[name] = scenario_result(model)
            if world > 1 and name == "frozen_bn":
                results["sync"] = sync_check(model, rank)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()
    torch.save(results, os.path.join(out, f"{tag}.pt"))


# ------------------------------------------------------------------------------------ the tests

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"rank0", "rank1", "single"}: each process's results (the two ranks and one process on the
    full batches run side by side)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    tmp = tmp_path_factory.mktemp("ddp")
    rendezvous = (tmp / "rendezvous").as_uri()
    jobs = {"rank0": (0, 2), "rank1": (1, 2), "single": (0, 1)}
    procs = {tag: subprocess.Popen([sys.executable, __file__, tag, str(r), str(w), rendezvous, str(tmp)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for tag, (r, w) in jobs.items()}
    logs = {}
    try:
        for tag, p in procs.items():
            logs[tag] = p.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tag, p in procs.items():
        assert p.returncode == 0, f"{tag} failed:\n{logs[tag][-3000:]}"
    return {tag: torch.load(tmp / f"{tag}.pt", weights_only=False) for tag in jobs}


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


def test_sync_quantization_repairs_a_divergence(runs):
    for rank in ("rank0", "rank1"):
        sync = runs[rank]["sync"]
        assert sync["before"]["x_quant.max_val"] == pytest.approx(1.0)
        assert sync["before"]["x_quant.scale"] > 0 and sync["raised"]
        assert set(sync["after"].values()) == {0.0}


def test_ddp_matches_single_process(runs):
    """Two ranks on half batches vs one process on the full batches (BatchNorm frozen). The graph
    input's range is the same data, exactly; everything downstream differs only through float
    summation order (DDP averages two half-batch gradients): weights by < 1e-5, quantization
    parameters by < 1e-4 relative, the int8 outputs by at most one code on a few values."""
    ddp, single = runs["rank0"]["frozen_bn"], runs["single"]["frozen_bn"]
    for k in ("x_quant.min_val", "x_quant.max_val", "x_quant.scale", "x_quant.zero_point"):
        assert torch.equal(ddp["state"][k], single["state"][k]), k
    w_diff = max(float((ddp["weights"][k] - single["weights"][k]).abs().max()) for k in ddp["weights"])
    rel = max(float(((ddp["state"][k] - single["state"][k]).abs() / single["state"][k].abs().clamp_min(1e-6)).max())
              for k in ddp["state"])
    code_diff = (ddp["codes"] - single["codes"]).abs()
    same = float((code_diff == 0).float().mean())
    print(f"DDP vs single process: weights max |diff| {w_diff:.3g}, quantization parameters max relative "
          f"diff {rel:.3g}, output codes identical {same:.4f} (max diff {float(code_diff.max()):.0f}), "
          f"outputs max |diff| {float((ddp['out'] - single['out']).abs().max()):.3g}")
    assert w_diff < 1e-5
    assert rel < 1e-4
    assert float(code_diff.max()) <= 1
    assert same >= 0.98


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
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    sys.exit(0)

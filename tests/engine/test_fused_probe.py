"""bench/fused.py, the fused-training probe: every member trains as labreport's trainer trains that run
alone, and a member that diverges changes no other. CPU, fp32, tiny runs on conftest's synthetic CIFAR-10
(two epochs of two steps: the data order crosses an epoch, Adam's bias correction moves)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from labreport.engine.datasets import load as load_data
from labreport.engine.device import RunOptions
from labreport.engine.splits import prepare
from labreport.engine.trainer import train
from labreport.store import RunStore
from labreport.testing import spec_from_dict

ROOT = Path(__file__).resolve().parents[2]
BATCH = 8
TINY = {"model": "resnet20", "batch_size": BATCH, "epochs": 2, "train_subset": 2 * BATCH, "val_size": 8,
        "test_subset": 8, "lr": 1e-4}  # the lab's Adam learning rate
GRID = [{"seed": 0, "dropout": 0.0, "weight_decay": 0.0}, {"seed": 1, "dropout": 0.3, "weight_decay": 1e-3},
        {"seed": 2, "dropout": 0.15, "weight_decay": 1e-4}]  # seeds, dropout rates and L2 of their own
SEEDS = [{"seed": 0}, {"seed": 1}]


def fused():
    spec = importlib.util.spec_from_file_location("fused", ROOT / "bench" / "fused.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fused", mod)
    spec.loader.exec_module(mod)
    return mod


def specs(members: list[dict], **common) -> list:
    return [spec_from_dict({**TINY, **common, **m}) for m in members]


def prepared(cifar_dir: Path, spec, device: str = "cpu"):
    return prepare(load_data(cifar_dir, download=False), spec, torch.device(device))


def trained_alone(runs: list, data, store_dir: Path, device: str = "cpu", channels_last: bool = True) -> list:
    """Each run through labreport's trainer: (its epoch records, its final weights and statistics)."""
    store = RunStore(store_dir)
    out = []
    for spec in runs:
        train(spec, data, torch.device(device), store, options=RunOptions(channels_last=channels_last))
        out.append((store.read_history(spec.key), store.load_checkpoint(spec.key)[0]["model"]))
    return out


def fused_steps(mod, runs: list, data, steps: int, device: str = "cpu"):
    run = mod.FusedRun(runs, data.train, torch.device(device))
    start = [{k: v.clone() for k, v in run.member_state(i).items()} for i in range(run.n)]
    losses, norms = zip(*(run.step() for _ in range(steps)))
    return run, start, torch.stack(losses).double().cpu(), torch.stack(norms).double().cpu()


def update_difference(a: dict, b: dict, start: dict) -> float:
    """|a - b| over |b - start| across all weights: how far apart two trainings' updates are."""
    names = [k for k in start if "running" not in k and "num_batches" not in k]
    num = sum(((a[k].double().cpu() - b[k].double().cpu()) ** 2).sum() for k in names)
    den = sum(((b[k].double().cpu() - start[k].double().cpu()) ** 2).sum() for k in names)
    return float((num / den).sqrt())


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("members, common", [(GRID[:2], {}), (SEEDS, {"norm": "none"})],
                         ids=["bn-grid", "bn-less-seeds"])
def test_each_fused_member_trains_as_the_trainer_trains_it_alone(members, common, cifar_dir, tmp_path):
    """Two members with BatchNorm and their own seed, dropout (0, 0.3) and weight decay (0, 1e-3), and
    two BN-less ones, each fused and through labreport's trainer alone. Tolerances, and why: a fused
    member runs grouped convolutions (one per layer for all members) where the trainer runs one
    convolution per run, so fp32 sums go in another order; Adam's first steps are nearly sign
    descent (|update| ~ lr for every weight), which turns a rounding difference in a near-zero
    gradient into a difference of up to 2 lr in that weight.
    So, with room for other CPUs' kernels (measured here at this size: losses 5e-8..3e-7, gradient
    norms 5e-7..1.2e-5, updates 2e-6..4e-4; at lr 1e-3 and batch 16 up to 5e-6, 1.2e-4, 6e-3):
    losses within rel 1e-5, gradient norms within rel 1e-3, the weights' updates within 1e-2 of
    their size, and member 1 closer to the trainer's run than the trainer's own run is with
    channels_last off, a setting labreport holds not to change what a run computes."""
    mod = fused()
    runs = specs(members, **common)
    data = prepared(cifar_dir, runs[0])
    run, start, losses, norms = fused_steps(mod, runs, data, steps=4)
    alone = trained_alone(runs, data, tmp_path / "nhwc")
    _, yardstick = trained_alone(runs[1:2], data, tmp_path / "nchw", channels_last=False)[0]  # member 1, NCHW
    for i, (history, weights) in enumerate(alone):
        assert [h["steps"] for h in history] == [2, 4]
        for e, h in enumerate(history):  # the epoch's records: means (and the max) over its two steps
            step_losses, step_norms = losses[2 * e:2 * e + 2, i], norms[2 * e:2 * e + 2, i]
            assert rel(step_losses.mean().item(), h["train_loss"]) < 1e-5
            assert rel(step_norms.mean().item(), h["grad_norm_mean"]) < 1e-3
            assert rel(step_norms.max().item(), h["grad_norm_max"]) < 1e-3
        mine = run.member_state(i)
        assert set(mine) == set(weights)  # every weight and BatchNorm statistic, named as the trainer's
        assert torch.equal(mine.get("bn1.num_batches_tracked", torch.tensor(0)),
                           weights.get("bn1.num_batches_tracked", torch.tensor(0)))
        assert update_difference(mine, weights, start[i]) < 1e-2
    ours, theirs = update_difference(run.member_state(1), alone[1][1], start[1]), update_difference(
        yardstick, alone[1][1], start[1])
    assert ours < theirs, (ours, theirs)
    assert bool(run.alive.all()) and run.frozen_at.tolist() == [-1] * len(runs)


def test_a_member_that_diverges_is_frozen_and_changes_no_other(cifar_dir):
    """A NaN put into member 1's weights before step 2: its loss is NaN from then on. Member 1 keeps
    its weights, Adam moments and BatchNorm statistics as they were; members 0 and 2 are bit for bit
    what they are in a run where nothing diverged (no global gradient norm, no shared loss scale)."""
    mod = fused()
    runs = specs(GRID)
    data = prepared(cifar_dir, runs[0])
    clean, poisoned = mod.FusedRun(runs, data.train, torch.device("cpu")), mod.FusedRun(runs, data.train,
                                                                                         torch.device("cpu"))
    for step in range(4):
        if step == 2:
            with torch.no_grad():
                poisoned.params["layer2.0.conv1.weight"][1, 0, 0, 0, 0] = float("nan")
            frozen = {k: v.clone() for k, v in poisoned.member_state(1).items()}
            moments = poisoned.adam_m.clone(), poisoned.adam_v.clone()
        clean_losses, _ = clean.step()
        losses, norms = poisoned.step()
        assert torch.equal(losses[[0, 2]], clean_losses[[0, 2]])
        assert losses[1].isnan().item() == (step >= 2) and norms[1].isfinite().item() == (step < 2)
    assert poisoned.frozen_at.tolist() == [-1, 2, -1] and poisoned.alive.tolist() == [True, False, True]
    for i in (0, 2):
        assert all(torch.equal(a, b) for a, b in zip(clean.member_state(i).values(), poisoned.member_state(i).values()))
    after = poisoned.member_state(1)
    assert all(torch.equal(frozen[k].nan_to_num(), after[k].nan_to_num()) for k in frozen)
    assert after["layer2.0.conv1.weight"].isnan().sum() == 1  # the NaN put there, and no other
    owned = poisoned.weights.member_of == 1
    assert torch.equal(poisoned.adam_m[owned], moments[0][owned]) and torch.equal(poisoned.adam_v[owned],
                                                                                   moments[1][owned])


def test_the_update_is_torch_adams_with_l2_weight_decay():
    """adam_update on stacked members against torch.optim.Adam on each alone: the same formula, so
    equal up to one rounding (weight decay is added by addcmul there, by add(alpha=) in torch)."""
    mod = fused()
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(50, generator=gen) for _ in range(3)]
    decay = [0.0, 1e-3, 1e-1]
    alone = [w.clone().requires_grad_() for w in weights]
    opts = [torch.optim.Adam([w], lr=1e-2, weight_decay=d) for w, d in zip(alone, decay)]
    flat, m, v = torch.cat(weights), torch.zeros(150), torch.zeros(150)
    owner = torch.arange(3).repeat_interleave(50)
    for step in range(1, 4):
        grads = [torch.randn(50, generator=gen) for _ in range(3)]
        for w, g, opt in zip(alone, grads, opts):
            w.grad = g.clone()
            opt.step()
        mod.adam_update(flat, torch.cat(grads), m, v, step=step, lr=1e-2, weight_decay=torch.tensor(decay)[owner],
                        ok=torch.ones(150, dtype=torch.bool))
    torch.testing.assert_close(flat, torch.cat([w.detach() for w in alone]), rtol=1e-6, atol=1e-7)


def test_the_labs_member_sets_can_train_fused_and_others_are_refused():
    mod = fused()
    sizes = {name: len(mod.member_specs(name)) for name in mod.MEMBER_SETS}
    assert sizes == {"resnet110-nobn": 10, "resnet110-bn": 3, "resnet20-reg": 12}
    for name in mod.MEMBER_SETS:
        mod.check_members(mod.member_specs(name))
    grid = mod.member_specs("resnet20-reg")
    assert {(s.dropout, s.weight_decay) for s in grid} == {(p, w) for p in (0.0, 0.15, 0.3)
                                                           for w in (0.0, 1e-5, 1e-4, 1e-3)}
    with pytest.raises(ValueError, match="differ in batch_size"):
        mod.check_members(specs([{}, {"batch_size": 32}]))
    with pytest.raises(ValueError, match="fp16"):
        mod.check_members(specs([{"precision": "fp16"}]))
    with pytest.raises(ValueError, match="Adam"):
        mod.check_members(specs([{"optimizer": "sgd"}]))


def test_the_callers_random_state_is_kept(cifar_dir):
    mod = fused()
    runs = specs(GRID[:2])
    data = prepared(cifar_dir, runs[0])
    before = torch.get_rng_state()
    mod.FusedRun(runs, data.train, torch.device("cpu")).step()
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_compiled_fused_training_agrees_with_eager(cifar_dir):
    """torch.compile of the fused step as the GPU check asks for it ("reduce-overhead": the weights
    marked static; on a CPU inductor declines the CUDA graphs), ~80 s on 2 busy cores. Inductor fuses
    and reorders the arithmetic around the grouped convolutions, so: losses within rel 1e-5 at the
    first step (1e-7 measured) and 1e-3 after (5e-4 at lr 1e-3), gradient norms within rel 1e-2 (4e-3)."""
    mod = fused()
    runs = specs(GRID)
    data = prepared(cifar_dir, runs[0])
    eager = mod.FusedRun(runs, data.train, torch.device("cpu"))
    compiled = mod.FusedRun(runs, data.train, torch.device("cpu"), compile_mode="reduce-overhead")
    for step in range(3):
        (le, ne), (lc, nc) = eager.step(), compiled.step()
        torch.testing.assert_close(lc, le, rtol=1e-5 if step == 0 else 1e-3, atol=0)
        torch.testing.assert_close(nc, ne, rtol=1e-2, atol=0)


@pytest.mark.gpu
def test_on_cuda_members_match_the_trainer_and_a_diverged_member_changes_no_other(cifar_dir, tmp_path):
    """On a GPU in fp32 without TF32: members without dropout (CUDA dropout draws its masks in its own
    kernel, the probe with bernoulli_: same distribution, other masks) against the trainer, with a
    looser bound on the weights (cuDNN picks its algorithms per shape: the grouped and the single
    convolution may differ by more than one reordering); then NaN isolation, bit for bit."""
    mod = fused()
    runs = specs([{"seed": 0}, {"seed": 1, "weight_decay": 1e-3}, {"seed": 2, "weight_decay": 1e-4}])
    data = prepared(cifar_dir, runs[0], "cuda")
    with mod.fp32_exact():
        run, start, losses, norms = fused_steps(mod, runs, data, steps=4, device="cuda")
        alone = trained_alone(runs, data, tmp_path / "alone", device="cuda")
        for i, (history, weights) in enumerate(alone):
            for e, h in enumerate(history):
                assert rel(losses[2 * e:2 * e + 2, i].mean().item(), h["train_loss"]) < 1e-3
                assert rel(norms[2 * e:2 * e + 2, i].mean().item(), h["grad_norm_mean"]) < 1e-2
            assert update_difference(run.member_state(i), weights, start[i]) < 1e-1
        clean = mod.FusedRun(runs, data.train, torch.device("cuda"))
        poisoned = mod.FusedRun(runs, data.train, torch.device("cuda"))
        with torch.no_grad():
            poisoned.params["fc.weight"][1, 0, 0] = float("nan")
        for _ in range(2):
            assert torch.equal(poisoned.step()[0][[0, 2]], clean.step()[0][[0, 2]])
    assert poisoned.alive.tolist() == [True, False, True]
    for i in (0, 2):
        assert all(torch.equal(a, b) for a, b in zip(clean.member_state(i).values(), poisoned.member_state(i).values()))

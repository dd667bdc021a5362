"""lr_at: the learning rate as a pure function of the global step, checked on hand-picked steps."""
from __future__ import annotations

import itertools
import math

import pytest

from labreport.spec import TrainSpec
from labreport.engine.schedule import lr_at, total_steps


def spec(**kw) -> TrainSpec:
    return TrainSpec(model="resnet20", **kw)


def test_constant_is_the_peak_lr_at_every_step():
    s = spec(lr=3e-4, epochs=5)
    assert [lr_at(s, step, 10) for step in (0, 1, 17, 49, 10_000)] == [3e-4] * 5


def test_step_schedule_with_epoch_milestones():
    s = spec(schedule="step", lr=0.1, milestones=(2, 4), gamma=0.1, epochs=6)
    per_epoch = 10
    assert lr_at(s, 0, per_epoch) == 0.1
    assert lr_at(s, 19, per_epoch) == 0.1  # last step of epoch 2 (epoch index 1)
    assert lr_at(s, 20, per_epoch) == pytest.approx(0.01)  # first step of the 3rd epoch: t = 2 epochs
    assert lr_at(s, 39, per_epoch) == pytest.approx(0.01)
    assert lr_at(s, 40, per_epoch) == pytest.approx(0.001)
    assert lr_at(s, 59, per_epoch) == pytest.approx(0.001)


def test_step_schedule_with_iteration_milestones_of_the_paper():
    # He et al. 2015: lr 0.1, divided by 10 at 32k and 48k iterations; steps_per_epoch does not matter
    s = spec(schedule="step", lr=0.1, milestones=(32000, 48000), schedule_unit="iter", epochs=164)
    for per_epoch in (391, 1):
        assert lr_at(s, 0, per_epoch) == 0.1
        assert lr_at(s, 31999, per_epoch) == 0.1
        assert lr_at(s, 32000, per_epoch) == pytest.approx(0.01)
        assert lr_at(s, 47999, per_epoch) == pytest.approx(0.01)
        assert lr_at(s, 48000, per_epoch) == pytest.approx(0.001)


def test_warmup_of_resnet110_then_the_schedule():
    # ResNet-110: 0.01 for the first 400 iterations, then 0.1 (He et al. 2015, sec. 4.2)
    s = spec(schedule="step", lr=0.1, milestones=(32000, 48000), schedule_unit="iter",
             warmup=400, warmup_lr=0.01, epochs=164)
    assert lr_at(s, 0, 391) == 0.01
    assert lr_at(s, 399, 391) == 0.01
    assert lr_at(s, 400, 391) == 0.1
    assert lr_at(s, 32000, 391) == pytest.approx(0.01)


def test_warmup_in_epochs():
    s = spec(lr=0.1, warmup=1, warmup_lr=0.01, epochs=3)
    assert lr_at(s, 9, 10) == 0.01
    assert lr_at(s, 10, 10) == 0.1


def test_warmup_without_a_warmup_lr_is_no_warmup():
    s = spec(lr=0.1, warmup=5, warmup_lr=0.0, epochs=10)
    assert lr_at(s, 0, 10) == 0.1


def test_cosine_endpoints_and_midpoint():
    s = spec(schedule="cosine", lr=0.2, epochs=4)
    per_epoch = 25
    total = total_steps(s, per_epoch)
    assert total == 100
    assert lr_at(s, 0, per_epoch) == pytest.approx(0.2)
    assert lr_at(s, total // 2, per_epoch) == pytest.approx(0.1)
    assert lr_at(s, total, per_epoch) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(s, total + 50, per_epoch) == pytest.approx(0.0, abs=1e-12)  # clamped, never rises again
    last = lr_at(s, total - 1, per_epoch)  # the last step actually taken: small but positive
    assert 0 < last < 1e-3
    lrs = [lr_at(s, i, per_epoch) for i in range(total)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))  # monotone decreasing
    assert all(math.isfinite(x) for x in lrs)

"""eta: how long the runs left take, from the speed of finished runs (pure, torch-free)."""

from __future__ import annotations

import pytest

from labreport import eta
from labreport.spec import TrainSpec


def result(model: str, seconds: float, device: str = "cuda", n=(45_000, 5_000, 10_000)) -> dict:
    return {"spec": {"model": model}, "mean_epoch_time_s": seconds, "n_train": n[0], "n_val": n[1],
            "n_test": n[2], "provenance": {"device_type": device}}


def test_a_run_like_a_finished_one_takes_its_epoch_time_per_epoch():
    sp = eta.speeds([result("resnet20", 30.0), result("resnet20", 50.0), result("resnet20", 40.0)])
    assert (sp.device_type, sp.runs) == ("cuda", 3)
    spec = TrainSpec(model="resnet20", epochs=50)  # the full data: 45,000 train, 5,000 val, 10,000 test
    assert eta.remaining_s(spec, 0, sp) == pytest.approx(50 * 40.0)  # the median epoch, 50 times
    assert eta.remaining_s(spec, 20, sp) == pytest.approx(30 * 40.0)  # a partial run: the epochs left
    assert eta.remaining_s(spec, 50, sp) == 0.0


def test_subsets_scale_the_estimate_and_evaluation_counts_a_third():
    sp = eta.speeds([result("cifarnet", 100.0)])  # 45,000 + (5,000 + 10,000) / 3 = 50,000 weighted images
    per_image = 100.0 / 50_000
    spec = TrainSpec(model="cifarnet", epochs=2, train_subset=1_000, val_size=500, test_subset=1_000)
    assert eta.spec_epoch_images(spec) == pytest.approx(1_000 + 1_500 / 3)
    assert eta.remaining_s(spec, 0, sp) == pytest.approx(2 * (1_000 + 500) * per_image)


def test_the_most_used_device_type_sets_the_speed_and_unknown_models_have_none():
    sp = eta.speeds([result("resnet20", 10.0), result("resnet20", 12.0), result("resnet20", 900.0, "cpu"),
                     result("resnet110", 5_000.0, "cpu")])
    assert sp.device_type == "cuda" and sp.seconds_per_image == {"resnet20": pytest.approx(11.0 / 50_000)}
    assert eta.remaining_s(TrainSpec(model="resnet110"), 0, sp) is None  # only measured on the CPU


@pytest.mark.parametrize("bad", [{"mean_epoch_time_s": None}, {"mean_epoch_time_s": 0}, {"n_train": None}])
def test_results_without_usable_timing_are_ignored(bad):
    assert eta.speeds([{**result("resnet20", 10.0), **bad}]) == eta.Speeds(None, {}, 0)
    assert eta.speeds([]) == eta.Speeds(None, {}, 0)


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (40, "40 s"), (60, "1 min"), (725, "12 min"),
                                           (3600, "1 h 00 min"), (11_400, "3 h 10 min"), (433_200, "120 h 20 min")])
def test_duration(seconds, text):
    assert eta.duration(seconds) == text

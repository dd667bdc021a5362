"""eta: how long the runs left take, from the speed of finished runs (pure, torch-free)."""

from __future__ import annotations

import pytest

from labreport.cluster import eta
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


# --- the device `run` would use, and the measured per-GPU table -------------------------------
def on_gpu(model: str, seconds: float, gpu: str) -> dict:
    r = result(model, seconds)
    r["provenance"]["device"] = gpu
    return r


STORE = [on_gpu("resnet20", 5.0, "NVIDIA H100 80GB HBM3"), on_gpu("resnet20", 7.0, "NVIDIA H100 80GB HBM3"),
         on_gpu("resnet20", 50.0, "Tesla T4"), result("resnet20", 900.0, "cpu")]
H100 = eta.Measured("H100", {"resnet20": 2e-5, "resnet110": 1e-4}, "precision auto (bf16), compile = false",
                    "2030-01-02", "bench/gpu_check.sh out ../shared/data")


def test_the_gpu_run_would_use_sets_the_speed_not_the_most_used_one():
    t4 = eta.speeds(STORE, eta.Device("cuda", "Tesla T4"))
    assert (t4.device_type, t4.device, t4.runs, t4.measured) == ("cuda", "Tesla T4", 1, None)
    assert t4.seconds_per_image == {"resnet20": pytest.approx(50.0 / 50_000)}  # not the H100's 6 s
    assert eta.basis(t4) == "at the speed of this store's 1 finished cuda run(s) on Tesla T4"
    cpu = eta.speeds(STORE, eta.Device("cpu"))
    assert (cpu.device_type, cpu.runs, cpu.seconds_per_image) == ("cpu", 1, {"resnet20": pytest.approx(900 / 50_000)})
    assert eta.speeds(STORE).device_type == "cuda" and eta.speeds(STORE).runs == 3  # unknown device: most used type


def test_a_gpu_the_store_has_not_seen_uses_the_measured_table_or_has_no_estimate():
    a100 = eta.Device("cuda", "NVIDIA A100-SXM4-80GB")
    assert eta.speeds(STORE, a100, table=()) == eta.Speeds(None, {}, 0, "NVIDIA A100-SXM4-80GB")
    h100_pcie = eta.speeds([result("resnet20", 1.0, "cpu")], eta.Device("cuda", "NVIDIA H100 PCIe"), table=(H100,))
    assert h100_pcie.measured is H100 and h100_pcie.runs == 0
    spec = TrainSpec(model="resnet110", epochs=50)
    assert eta.remaining_s(spec, 10, h100_pcie) == pytest.approx(40 * 50_000 * 1e-4)
    assert eta.basis(h100_pcie) == ("at the speed measured on H100 on 2030-01-02 (precision auto (bf16), "
                                    "compile = false; `bench/gpu_check.sh out ../shared/data`)")


def test_per_gpu_estimates_come_from_the_measured_table_only():
    left = [(TrainSpec(model="resnet20", epochs=50), 0), (TrainSpec(model="resnet110", epochs=50), 25)]
    rows = eta.per_gpu(left, table=(H100,))
    assert [(g, m) for g, _, m in rows] == [("T4", None), ("A100", None), ("H100", H100)]
    assert rows[0][1] is None and rows[2][1] == pytest.approx(50 * 50_000 * 2e-5 + 25 * 50_000 * 1e-4)
    text = eta.per_gpu_text(rows)
    assert text.startswith("on one GPU, T4: not measured, A100: not measured, H100: ~3 min (H100 measured 2030-01-02")
    lacking = eta.per_gpu([(TrainSpec(model="cifarnet"), 0)], table=(H100,))  # a model it has no figure for
    assert lacking[2][1] is None and "H100: ?" in eta.per_gpu_text(lacking)


def test_a_measured_gpu_beyond_the_wanted_three_gets_its_own_row():
    h200 = eta.Measured("H200", {"resnet20": 1e-5}, "precision auto (bf16)", "2030-01-03", "bench/gpu_check.sh out")
    rows = eta.per_gpu([(TrainSpec(model="resnet20", epochs=10), 0)], table=(H100, h200))
    assert [g for g, _, _ in rows] == ["T4", "A100", "H100", "H200"]
    assert rows[3][1] == pytest.approx(10 * 50_000 * 1e-5) and rows[3][2] is h200


def test_without_measured_figures_dry_run_says_so():
    rows = eta.per_gpu([(TrainSpec(model="resnet20"), 0)], table=())
    assert rows == [("T4", None, None), ("A100", None, None), ("H100", None, None)]
    assert eta.per_gpu_text(rows) == "on a T4, A100, H100: no figures measured on those GPUs yet"
    assert all(m.date and m.command for m in eta.MEASURED)  # each figure says when and how it was measured


def test_dry_run_estimates_for_the_gpu_it_would_run_on(tmp_path, monkeypatch):
    """Finished runs on that GPU first, then the per-GPU table; without either nothing is timed on a GPU
    that is not there (measure=False stands for the GPU this CPU machine lacks)."""
    from labreport.config import load_config
    from labreport.store import RunStore

    import labreport.engine.device as device_mod

    toml = tmp_path / "e.toml"
    toml.write_text('[[experiment]]\nname = "a"\nmodel = "resnet20"\nseeds = 2\n[gradflow]\nenabled = false\n')
    config = load_config(toml)
    done, left = config.runs
    store = RunStore(tmp_path / "runs")
    store.write_result(done.key, {**on_gpu("resnet20", 100.0, "NVIDIA H100 80GB HBM3"), "key": done.key,
                                  "status": "completed", "epochs_run": 50})

    def lines(gpu: str) -> list[str]:
        monkeypatch.setattr(device_mod, "device_identity", lambda setting: ("cuda", gpu))
        return list(eta.estimate(config, store, list(config.runs), "cuda", measure=False).lines)

    out = lines("NVIDIA H100 80GB HBM3")
    assert out[-2] == "estimate: ~1 h 23 min"  # 50 epochs of its 100 s
    assert out[-4] == "at the speed of this store's 1 finished cuda run(s) on NVIDIA H100 80GB HBM3"
    assert out[-3] == "on a T4, A100, H100: no figures measured on those GPUs yet"
    assert lines("Tesla T4")[-2] == ("estimate: none yet (no finished run in this store to go by, and nothing "
                                     "timed here)")
    monkeypatch.setattr(eta, "MEASURED", (H100,))
    out = lines("NVIDIA H100 PCIe")
    assert out[-2] == "estimate: ~50 s" and out[-4].startswith("at the speed measured on H100 on 2030-01-02")
    assert out[-3].startswith("on one GPU, T4: not measured, A100: not measured, H100: ~50 s (H100 measured")
    assert out[-1] == "1 to train, 1 already done"


def test_dry_run_lines_give_each_run_its_time_per_task_and_name_what_has_no_speed():
    rates = {"a1": eta.Rate(1e-3, 1e-3 / 3, "runs"), "b2": None, "c3": eta.Rate(2e-3, 1e-3, "measured")}
    left = [eta.Left("a1", "ResNet-20", TrainSpec(model="resnet20", epochs=2), 1, "partial 1/2", "4"),
            eta.Left("b2", "CIFARNet", TrainSpec(model="cifarnet", epochs=2), 0, "missing", "3"),
            eta.Left("c3", "ResNet-110", TrainSpec(model="resnet110", epochs=1, train_subset=1_000, val_size=500,
                                                   test_subset=1_000), 0, "missing", "5")]
    lines = eta.dry_run_lines(left, rates, ["from somewhere"], {"1": 120.0})
    assert lines[0].startswith("would train a1  partial 1/2") and "~50 s" in lines[0]  # 1 epoch x 50,000 x 1 ms
    assert lines[1].split() == ["would", "train", "b2", "missing", "?", "CIFARNet"]
    assert "~4 s" in lines[2]  # 1,000 x 2 ms + 1,500 x 1 ms = 3.5 s
    assert lines[3] == "from somewhere"
    assert lines[-1] == ("estimate: task 1 (gradient flow) ~2 min, task 4 ~50 s, task 5 ~4 s; in all ~3 min for 2 "
                         "of the 3 runs; no speed to go by for cifarnet")
    assert eta.dry_run_lines([], rates, []) == []


def test_a_run_of_max_iters_takes_its_steps_and_an_evaluation_per_epoch_begun():
    rate = eta.Rate(1e-3, 1e-4, "measured")
    spec = TrainSpec(model="resnet20", batch_size=100, max_iters=1_000, train_subset=45_000)  # 450 steps an epoch
    whole = eta.run_seconds(spec, 0, rate)
    assert whole == pytest.approx(1_000 * 100 * 1e-3 + 3 * 15_000 * 1e-4)  # 3 epochs begun, each evaluated
    assert eta.run_seconds(spec, 2, rate) == pytest.approx(100 * 100 * 1e-3 + 15_000 * 1e-4)
    assert eta.run_seconds(spec, 3, rate) == 0


def test_finished_runs_speed_wins_over_a_timed_one_and_a_timed_one_over_the_table():
    left = eta.Left("k", "x", TrainSpec(model="resnet20"), 0, "missing")
    timed = {left.spec.key: eta.Rate(3.0, 1.0, "measured")}
    from_runs = eta.Speeds("cuda", {"resnet20": 2.0}, 4)
    from_table = eta.Speeds("cuda", {"resnet20": 5.0}, 0, "H100", H100)
    assert eta.rate_for(left, from_runs, timed) == eta.Rate(2.0, 2.0 * eta.EVAL_WEIGHT, "runs")
    assert eta.rate_for(left, from_table, timed) == timed[left.spec.key]
    assert eta.rate_for(left, from_table, {}) == eta.Rate(5.0, 5.0 * eta.EVAL_WEIGHT, "table")
    assert eta.rate_for(left, eta.Speeds(None, {}, 0), {}) is None

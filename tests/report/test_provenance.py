"""Section 2.5's hardware line from the runs' provenance: a CPU by its model, a GPU with the CUDA it
ran with, and no CUDA for a CPU run (torch records the version it was built with there too)."""

from __future__ import annotations

from labreport.report.i18n import Lang
from labreport.report.provenance import cudnn_version, device_phrase, devices, facts
from views import view


def ran_on(**prov):
    v = view("a", 0.5)
    v.result["provenance"] = prov
    return v


def test_a_cpu_run_names_the_cpu_and_no_cuda():
    runs = [ran_on(device="AMD EPYC 7B13", device_type="cpu", threads=2, cuda="13.0", torch="2.14.1+cu130"),
            ran_on(device="AMD EPYC 7B13", device_type="cpu", threads=4, cuda="13.0")]
    (d,) = devices(runs)
    assert (d.kind, d.name, d.threads, d.cuda) == ("cpu", "AMD EPYC 7B13", (2, 4), ())
    assert device_phrase(d, Lang("ru")) == "процессор AMD EPYC 7B13 (потоков: 2, 4)"
    assert device_phrase(d, Lang("en")) == "CPU AMD EPYC 7B13 (threads: 2, 4)"
    assert facts(runs)["torch"] == ["2.14.1+cu130"]


def test_a_gpu_run_names_the_gpu_with_cuda_cudnn_and_the_driver_where_recorded():
    runs = [ran_on(device="NVIDIA H200", device_type="cuda", cuda="13.0", cudnn=91002, threads=16),
            ran_on(device="Tesla T4", device_type="cuda", cuda="12.4", cudnn=8906, driver="550.54")]
    h200, t4 = devices(runs)
    assert device_phrase(h200, Lang("en")) == "GPU NVIDIA H200 (CUDA 13.0; cuDNN 9.10.2)"
    assert device_phrase(t4, Lang("ru")) == "GPU Tesla T4 (CUDA 12.4; cuDNN 8.9.6; драйвер 550.54)"


def test_results_from_before_the_cpu_model_was_recorded_say_so():
    (d,) = devices([ran_on(device="cpu", threads=2, cuda="13.0")])  # no device_type, no model
    assert device_phrase(d, Lang("ru")) == "процессор (модель не записана; потоков: 2)"
    (g,) = devices([ran_on(device="cuda:0", cuda="12.1")])
    assert device_phrase(g, Lang("en")) == "GPU (name not recorded; CUDA 12.1)"
    assert devices([view("b", 0.5), view("c", None, status="missing")]) == []  # nothing recorded: nothing said


def test_cudnn_versions_read_as_released():
    assert [cudnn_version(v) for v in (90100, 91002, 8906, 7605)] == ["9.1.0", "9.10.2", "8.9.6", "7.6.5"]

"""What the store's JSON files hold: the one place that says it (the trainer writes these, the
report, `status` and `run --dry-run` read them).

Types only, no behaviour: `TypedDict`s read as documentation and checked by type checkers, while
the files stay plain JSON that any tool reads. A field added later is `NotRequired`: results
written before it must still be read (tests/test_legacy_store.py holds such a store).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# A finished run's outcome, in result.json: trained to its last epoch, or stopped on a non-finite
# loss (a valid outcome of the BatchNorm study, not a crash)
ResultStatus = Literal["completed", "diverged"]
RESULT_STATUSES: tuple[ResultStatus, ...] = ("completed", "diverged")
# A run as the store sees it (RunStore.state): done and diverged are final, never trained again
RunStatus = Literal["done", "diverged", "partial", "failed", "missing"]
FINAL_STATES: tuple[RunStatus, ...] = ("done", "diverged")
# How the reported epoch was chosen: on validation accuracy, or the last epoch without a validation split
SelectedBy = Literal["val_acc", "last_epoch"]


class EpochRecord(TypedDict):
    """One element of history.json: one finished epoch."""

    epoch: int  # from 1
    lr: float  # the learning rate of the epoch's last step
    train_loss: float  # mean cross-entropy over the epoch's training images (as trained: dropout on)
    train_acc: float
    val_loss: float | None  # None: no validation split (val_size = 0)
    val_acc: float | None
    test_loss: float
    test_acc: float
    train_time_s: float  # the training steps alone
    epoch_time_s: float  # training, evaluation and the checkpoint
    images_per_s: float  # training images per second of train_time_s
    grad_norm_mean: float  # global gradient norm, mean over the steps taken (skipped fp16 steps excluded)
    grad_norm_max: float
    steps: int  # optimizer steps since the run started, skipped ones included
    mem_alloc_mib: float | None  # peak CUDA memory of the epoch; None on a CPU
    mem_reserved_mib: float | None
    micro_batch: int  # images per forward pass (smaller than the batch after an out-of-memory retry)
    precision: str  # fp32 | bf16 | fp16: what the epoch computed in
    skipped_steps: int  # fp16 steps skipped on overflow by the loss scaler (not a divergence)
    loss_scale: float | None  # fp16: the scaler's scale at the epoch's end; None otherwise


class Provenance(TypedDict):
    """Where and how a run was computed (engine.device.provenance fills it)."""

    labreport: str
    train_version: int  # spec.TRAIN_VERSION: what a run computes
    torch: str
    cuda: str | None  # the CUDA torch was built with
    cudnn: int | None
    device: str  # the GPU's name, or the CPU's
    device_type: str  # "cuda" | "cpu"
    capability: str | None  # CUDA compute capability, "8.0": what precision = "auto" resolved from
    host: str
    python: str
    threads: int  # torch's CPU threads
    precision: str  # what precision = "auto" (or the setting) resolved to
    tf32: bool | None  # fp32 convolutions on tensor cores (cuDNN's default); None on a CPU
    channels_last: bool
    compile: str | bool  # torch.compile's mode, or False (eager)
    cuda_graphs: bool | None  # CUDA graphs ran (None: could not be told)
    cudagraph_skips: int | None
    data_fingerprint: str  # sha256 of the data set's files (16 hex digits)
    data_official: bool  # every file has the official md5
    host_malloc: dict | None  # engine.hostmem's allocator setting; None: the C library's defaults


class OomEvent(TypedDict):
    epoch: int  # the epoch from which the smaller micro-batch was used
    micro_batch: int


class Result(TypedDict):
    """result.json: written last, the run is final only when it is there and valid."""

    key: str  # the run key (16 hex digits): the folder's name
    spec: dict  # TrainSpec.to_dict(): what was trained
    status: ResultStatus
    epochs_run: int
    diverged_at_epoch: int | None
    diverged_reason: str | None  # in words (engine.precision.divergence_reason)
    total_time_s: float  # the epochs' times summed (a resumed run: over every process it ran in)
    best_epoch: int | None  # the reported epoch, chosen on validation (None: no epoch finished)
    selected_by: SelectedBy | None
    best_val_acc: float | None
    test_acc_at_best: float | None  # THE metric of the report: test accuracy at the chosen epoch
    final_test_acc: float | None
    final_train_acc: float | None
    final_val_acc: float | None
    mean_epoch_time_s: NotRequired[float]  # these three: only when an epoch finished
    peak_mem_alloc_mib: NotRequired[float | None]
    peak_mem_reserved_mib: NotRequired[float | None]
    provenance: Provenance
    oom_events: list[OomEvent]
    params: int  # trainable parameters
    steps: int  # optimizer steps taken
    skipped_steps: int
    n_train: int  # images of each split the run saw
    n_val: int
    n_test: int
    # per-image test predictions of the chosen epoch and the labels they are scored against, one
    # digit per image: two configurations are compared on the same images (science.compare)
    test_predictions: NotRequired[str]
    test_labels: NotRequired[str]


REQUIRED = ("key", "status", "spec", "epochs_run", "provenance")  # a result.json without these is not a result

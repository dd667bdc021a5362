"""Hand-made runs for the tests of the conclusions, the comparisons, the BN claim and the labels."""

from __future__ import annotations

from labreport.science.runs import RunView


def answers(correct: str) -> tuple[str, str]:
    """(predictions, labels) from a mask of '1' (right) and '0' (wrong): every label is 3."""
    return "".join("3" if c == "1" else "5" for c in correct), "3" * len(correct)


def view(exp, acc, *, model="resnet20", task="4", status="done", best_val=None, seed=None, norm="batch",
         epochs=3, train_acc=None, init="he", correct=None, reason=None, precision=None, **coords) -> RunView:
    """A hand-made run. `correct`: its per-image answers on the test set (see answers); acc is then
    the share of '1's unless given."""
    varying = dict(coords)
    if seed is not None:
        varying["seed"] = seed
    spec = {"model": model, "norm": norm, "init": init, "seed": seed or 0, "epochs": epochs, **coords}
    result = None
    if status in ("done", "diverged"):
        if correct is not None and acc is None and status == "done":
            acc = correct.count("1") / len(correct)
        result = {"status": "completed" if status == "done" else "diverged", "test_acc_at_best": acc,
                  "best_val_acc": best_val if best_val is not None else acc, "final_test_acc": acc,
                  "final_train_acc": train_acc if train_acc is not None else acc, "mean_epoch_time_s": 2.0,
                  "params": 100, "epochs_run": epochs, "diverged_reason": reason,
                  "provenance": {"precision": precision} if precision else {}}
        if correct is not None:
            result["test_predictions"], result["test_labels"] = answers(correct)
            result["n_test"] = len(correct)
    label = exp + (f"[{', '.join(f'{k}={v}' for k, v in varying.items())}]" if varying else "")
    return RunView(exp, task, label, "0" * 16, spec, varying, status, result, ())

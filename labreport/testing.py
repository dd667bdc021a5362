"""Helpers for tests of labreport and of a user's own code around it: a small learnable CIFAR-10
look-alike in the official file format, and a TrainSpec from its dictionary. Not used by labreport
itself."""

from __future__ import annotations

from typing import Any

from labreport.spec import TrainSpec


def spec_from_dict(d: dict[str, Any]) -> TrainSpec:
    """A TrainSpec from TrainSpec.to_dict() (spec.json, result.json's "spec")."""
    d = dict(d)
    d["milestones"] = tuple(d.get("milestones", ()))
    return TrainSpec(**d)

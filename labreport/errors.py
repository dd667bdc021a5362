"""Errors that the CLI turns into one-line messages (never a traceback).

Each carries the exit code the CLI should use: 2 for usage/config/data errors.
"""

import difflib
from typing import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """" (did you mean 'epochs'?)" when one of `known` is close to `name`, else "": how every error
    about a name that is not there ends."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class LabreportError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 2


class ConfigError(LabreportError):
    """experiments.toml is unreadable or invalid."""


class DataError(LabreportError):
    """CIFAR-10 is missing, incomplete or malformed."""


class ModelError(LabreportError):
    """Unknown model name or an option the model does not support."""


class ClusterError(LabreportError):
    """The cluster refused what `run --executor` asked for (sbatch's error, and the setting to change)."""


class PackageDataError(LabreportError):
    """A template, catalogue or font of the installation is missing or unreadable."""


class CatalogueError(LabreportError):
    """A message catalogue that cannot be read, or none for the report's language."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, Slurm's scancel, a notebook runtime stopped) while `labreport run` trains:
    handled as Ctrl-C is (the last epoch checkpoint kept, the run's claim released), exit code 143."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process it ended

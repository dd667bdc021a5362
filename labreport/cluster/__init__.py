"""Where runs execute: one Executor interface with its local, processes (--jobs) and Slurm
(submitit) implementations, the time estimate of `run --dry-run`, and the progress a user sees.
"""

"""The training engine: where torch lives.

Models (the networks the catalogue names), CIFAR-10 on the device, the splits, the learning-rate
schedule, precision and the device, the trainer (one run, in phases, resumable), the matrix runner
(every run not done, never one twice) and the gradient-flow measurement of task 1. It reads the
vocabulary (spec, config, store) and nothing above it; nothing here draws, writes a report or
knows how runs are spread over processes or a cluster.
"""

"""Training machinery: configs, optimiser and LR schedule, checkpoints, multi-process set-up, metrics."""

"""The training engine: a thin loop on torch.distributed, DCP checkpoints, metrics."""

"""The training engine: a thin loop on torch.distributed (DDP/FSDP2), DCP checkpoints, metrics; see docs/engine.md."""

"""Training: masked multi-property losses, the training loop, checkpoints."""

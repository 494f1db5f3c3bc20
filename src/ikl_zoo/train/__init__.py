"""IKL-AT training."""

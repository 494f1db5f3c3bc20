"""Architectures, the model registry and checkpoint loading; ``ikl_zoo`` exports what most callers need."""

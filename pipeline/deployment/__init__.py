"""Stage 3: the validation record, the local registry, packaging, serving, deploy targets (local, Azure ML)."""

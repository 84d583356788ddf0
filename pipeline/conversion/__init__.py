"""Stage 1: resolve the source, build the input cases, convert, run the original model."""

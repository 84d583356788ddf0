"""Batch conversion over a manifest of many models (docs/batch.md).

>>> from onnxgate.pipeline import batch
>>> rows = batch.run("models.toml", out="out/", jobs=2)            # doctest: +SKIP
>>> for row in batch.run("models.toml", out="out/", stream=True):  # doctest: +SKIP
...     print(row["name"], row["verdict"])
"""

from onnxgate.pipeline.batch.runner import Settings, exit_code, iter_rows, load, run

__all__ = ["Settings", "exit_code", "iter_rows", "load", "run"]

"""Per-layer values of a Keras model, for ``onnxgate diagnose``."""

from __future__ import annotations

import numpy as np


def keras_intermediates(model, inputs, onnx_model):
    """Each layer's output of a functional/Sequential Keras model, mapped to
    the ONNX tensor written by the last node of that layer's name scope
    (tf2onnx keeps ``functional_1/fc2_1/MatMul``: TF appends ``_N`` to the
    layer name ``fc2``)."""
    import re

    import keras

    from onnxgate.plugins import Intermediate

    if not isinstance(model, keras.Model) or getattr(model, "_inputs_struct", None) is None:
        return []  # subclassed models have no symbolic layer outputs
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    names = {l.name for l in layers}
    last: dict[str, str] = {}
    for node in onnx_model.graph.node:
        for segment in node.name.split("/")[:-1]:
            stripped = re.sub(r"_\d+$", "", segment)
            layer = stripped if stripped in names else (segment if segment in names else None)
            if layer is not None:
                last[layer] = node.output[0]
    single = [l for l in layers if l.name in last and not isinstance(l.output, (list, tuple, dict))]
    if not single:
        return []
    probe = keras.Model(model.inputs, [l.output for l in single])
    arrays = list(inputs.values())
    values = probe(arrays[0] if len(arrays) == 1 else arrays, training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    return [Intermediate(l.name, type(l).__name__, last[l.name], np.asarray(v)) for l, v in zip(single, values)]

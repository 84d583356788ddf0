"""How well does the gate catch wrong conversions? Fault injection.

    python bench/gate_accuracy.py [--only NAME ...]

Models from the zoo (``fixtures/zoo/``) are converted and pass the gate.
Then each fault a real conversion can make is injected into the ONNX model,
and the gate (stage 2, the same expected outputs of the original) runs
again on the broken model:

- weight:      the weight tensor nearest the output perturbed by 5 % (relative,
               seeded noise); ai.onnx.ml models: their largest float attribute
- postproc:    the final Softmax/LogSoftmax/Sigmoid dropped (its input wired
               to the output); ai.onnx.ml models: post_transform set to NONE
- swap:        two outputs' names swapped (models with two or more outputs)
- frozen_axis: the batch axis of every input frozen to the base case's size
- float16:     the largest float initializer rounded to float16 and back
- float16_all: every float weight (initializers, ai.onnx.ml float attributes)
               rounded to float16 and back, as a float16 conversion stores them
- epsilon:     every normalisation's epsilon changed from its value to 1e-2
- resize:      every Resize's mode changed (nearest <-> linear)

A fault that does not apply to a model (no Resize, one output) is not
injected. Prints, per fault kind, detected / injected, and the false
failures: unmodified models that fail the gate when validated again.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def models(tmp: Path):
    """(name, source object or path, sample path) of correctly converted zoo models."""
    import torch
    from zoo import torch_models
    from zoo.classic import sklearn_models

    out = []
    for factory in (
        "resnet_tiny",
        "mobilenet_tiny",
        "efficientnet_tiny",
        "vit_tiny",
        "mlp_mixed",
        "gru_classifier",
        "audio_conv1d",
        "two_tower",
    ):
        model, example = getattr(torch_models, factory)()
        names = list(model.forward.__code__.co_varnames[1 : 1 + len(example)])
        path = tmp / f"{factory}.npz"
        np.savez(path, **{n: t.numpy() for n, t in zip(names, example)})
        out.append((f"torch/{factory}", model, path))

    class Upsampler(torch.nn.Module):
        """A decoder step with Resize (nearest), then a conv and a sigmoid."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.conv = torch.nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, features):
            up = torch.nn.functional.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False)
            return torch.sigmoid(self.conv(up))

    from zoo import deep_cnn_models

    for factory in deep_cnn_models.FACTORIES:  # deep CNNs: float32 noise near 1e-4 on their logits
        model, (images,) = getattr(deep_cnn_models, factory)()
        path = tmp / f"{factory}.npy"
        np.save(path, images.numpy())
        out.append((f"torch/{factory}", model, path))

    path = tmp / "upsampler.npz"
    np.savez(path, features=np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32))
    out.append(("torch/upsampler", Upsampler().eval(), path))
    keep = {
        "imputer-logreg",
        "mlp-classifier",
        "svc-rbf",
        "knn-classifier",
        "multioutput-ridge",
        "voting-soft",
        "random-forest",
        "gaussian-nb",
        "sgd-classifier",
    }
    for name, _, model, X in sklearn_models():
        if name in keep:
            path = tmp / f"{name}.npy"
            np.save(path, X[::12].astype(np.float32))
            out.append((f"sklearn/{name}", model, path))
    return out


# --- faults: each takes an onnx ModelProto (a copy) and returns True when applied
def _float_inits(model, min_size=2):
    from onnx import numpy_helper

    found = []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and arr.size >= min_size:
            found.append((init, arr))
    return found


def _replace_init(model, init, arr):
    from onnx import numpy_helper

    init.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(init).dtype), init.name))


def weight(model) -> bool:
    """The weight nearest the output (its errors are not washed out by the
    normalisations of a randomly initialised network)."""
    inits = {i.name: (i, a) for i, a in _float_inits(model, 4)}
    used = [name for node in model.graph.node for name in node.input if name in inits]
    if not used:
        return _perturb_ml_attribute(model)
    init, arr = inits[used[-1]]
    noise = np.random.default_rng(0).standard_normal(arr.shape)
    _replace_init(model, init, arr * (1 + 0.05 * noise))
    return True


def _perturb_ml_attribute(model) -> bool:
    """ai.onnx.ml models keep weights in attributes (coefficients, nodes_values...)."""
    from onnx import helper

    found = [
        attr
        for node in model.graph.node
        for attr in node.attribute
        if attr.type == helper.AttributeProto.FLOATS and len(attr.floats) >= 4 and attr.name != "classlabels_floats"
    ]
    if not found:
        return False
    attr = max(found, key=lambda a: len(a.floats))
    values = np.asarray(attr.floats, dtype=np.float64)
    noise = np.random.default_rng(0).standard_normal(values.shape)
    attr.floats[:] = (values * (1 + 0.05 * noise)).astype(np.float32).tolist()
    return True


POSTPROC = ("Softmax", "LogSoftmax", "Sigmoid", "post_transform", "Normalizer")


def postproc(model) -> bool:
    """The last node of the most telling kind (a Normalizer after a Softmax
    often changes nothing: drop the Softmax)."""
    graph = model.graph
    candidates = [(n.op_type, n) for n in graph.node if n.op_type in POSTPROC]
    candidates += [
        ("post_transform", n)
        for n in graph.node
        for a in n.attribute
        if a.name == "post_transform" and a.s not in (b"NONE", b"")
    ]  # ai.onnx.ml's built-in softmax
    if not candidates:
        return False
    rank = {op: i for i, op in enumerate(POSTPROC)}
    best = min(rank[kind] for kind, _ in candidates)
    node = [n for kind, n in candidates if rank[kind] == best][-1]
    if best == rank["post_transform"]:
        next(a for a in node.attribute if a.name == "post_transform").s = b"NONE"
        return True
    src, dst = node.input[0], node.output[0]
    graph.node.remove(node)
    for other in graph.node:
        other.input[:] = [src if i == dst else i for i in other.input]
    if any(out.name == dst for out in graph.output):  # keep the public name: rename the producer's output
        for other in graph.node:
            other.output[:] = [dst if o == src else o for o in other.output]
            other.input[:] = [dst if i == src else i for i in other.input]
    return True


def swap(model) -> bool:
    outs = model.graph.output
    if len(outs) < 2:
        return False
    a, b = outs[0].name, outs[1].name
    tmp = "__swap__"
    for node in model.graph.node:
        node.output[:] = [tmp if o == a else o for o in node.output]
        node.input[:] = [tmp if i == a else i for i in node.input]
    for node in model.graph.node:
        node.output[:] = [a if o == b else o for o in node.output]
        node.input[:] = [a if i == b else i for i in node.input]
    for node in model.graph.node:
        node.output[:] = [b if o == tmp else o for o in node.output]
        node.input[:] = [b if i == tmp else i for i in node.input]
    # value types follow the names' new producers
    ta, tb = copy.deepcopy(outs[0].type), copy.deepcopy(outs[1].type)
    outs[0].type.CopyFrom(tb)
    outs[1].type.CopyFrom(ta)
    return True


def frozen_axis(model, batch: int) -> bool:
    from onnxgate.plugins.helpers import graph_inputs

    changed = False
    for inp in graph_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
            changed = True
    return changed


def float16(model) -> bool:
    """The largest initializer rounded to float16 (not injected when that changes no value)."""
    inits = _float_inits(model, 4)
    if not inits:
        return False
    init, arr = max(inits, key=lambda p: p[1].size)
    rounded = arr.astype(np.float16).astype(arr.dtype)
    if np.array_equal(rounded, arr):
        return False
    _replace_init(model, init, rounded)
    return True


def float16_all(model) -> bool:
    """Every float weight rounded to float16, as a float16 conversion stores them:
    initializers, and ai.onnx.ml's float attributes (not injected when that changes no value)."""
    from onnx import helper

    changed = False
    for init, arr in _float_inits(model, 4):
        rounded = arr.astype(np.float16).astype(arr.dtype)
        if not np.array_equal(rounded, arr):
            _replace_init(model, init, rounded)
            changed = True
    for node in model.graph.node:
        for attr in node.attribute:
            if (
                attr.type == helper.AttributeProto.FLOATS
                and len(attr.floats) >= 4
                and attr.name != "classlabels_floats"
            ):
                values = np.asarray(attr.floats, dtype=np.float32)
                rounded = values.astype(np.float16).astype(np.float32)
                if not np.array_equal(rounded, values):
                    attr.floats[:] = rounded.tolist()
                    changed = True
    return changed


def epsilon(model) -> bool:
    changed = False
    for node in model.graph.node:
        if node.op_type in (
            "BatchNormalization",
            "LayerNormalization",
            "InstanceNormalization",
            "GroupNormalization",
            "SimplifiedLayerNormalization",
        ):
            attrs = {a.name: a for a in node.attribute}
            if "epsilon" in attrs:
                attrs["epsilon"].f = 1e-2
            else:
                from onnx import helper

                node.attribute.append(helper.make_attribute("epsilon", 1e-2))
            changed = True
    return changed


def resize(model) -> bool:
    changed = False
    for node in model.graph.node:
        if node.op_type == "Resize":
            attrs = {a.name: a for a in node.attribute}
            mode = attrs["mode"].s.decode() if "mode" in attrs else "nearest"
            new = b"linear" if mode == "nearest" else b"nearest"
            if "mode" in attrs:
                attrs["mode"].s = new
            else:
                from onnx import helper

                node.attribute.append(helper.make_attribute("mode", new))
            changed = True
    return changed


FAULTS = OrderedDict(
    weight=weight,
    postproc=postproc,
    swap=swap,
    frozen_axis=frozen_axis,
    float16=float16,
    float16_all=float16_all,
    epsilon=epsilon,
    resize=resize,
)


def gate(artifact, model):
    from dataclasses import replace

    from onnxgate.pipeline.gate import stage as stage_validate
    from onnxgate.pipeline.gate.config import GateConfig
    from onnxgate.plugins.errors import OnnxgateError

    broken = replace(artifact, model=model)
    try:
        section = stage_validate.validate(broken, artifact.tolerance, gate=GateConfig())
    except OnnxgateError:  # onnxruntime refuses the model: the gate stops it too
        return False
    # the verdict's inputs (gate.verdict.decide, without drift): every check and case passed
    return all(c["passed"] for c in section["checks"]) and all(c["passed"] for c in section["cases"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", default=[])
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from onnxgate.pipeline import api

    counts = OrderedDict((k, [0, 0]) for k in FAULTS)
    missed = []
    false_failures, clean = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, sample in models(Path(tmp)):
            if args.only and not any(s in name for s in args.only):
                continue
            result = api.convert(source, sample=sample, latency=False)
            artifact = result.artifact
            if not result.passed:
                print(f"skip {name}: does not pass unmodified ({result.report.to_dict()['failures'][:1]})")
                continue
            clean += 1
            if not gate(artifact, artifact.model):
                false_failures.append(name)
            batch = int(next(iter(artifact.cases[0].inputs.values())).shape[0])
            for kind, fault in FAULTS.items():
                broken = copy.deepcopy(artifact.model)
                applied = fault(broken, batch) if kind == "frozen_axis" else fault(broken)
                if not applied:
                    continue
                counts[kind][1] += 1
                if not gate(artifact, broken):
                    counts[kind][0] += 1
                else:
                    missed.append(f"{kind} on {name}")
    print(f"\n{'fault':<12} {'detected':>8} / injected")
    for kind, (detected, injected) in counts.items():
        print(f"{kind:<12} {detected:>8} / {injected}")
    print(
        f"false failures on unmodified models: {len(false_failures)} / {clean}"
        + (f" ({', '.join(false_failures)})" if false_failures else "")
    )
    if missed:
        print("missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The "legacy" environment: MXNet 1.9.1 and Chainer 7.8.1.

Both frameworks are retired upstream and need numpy < 1.24 and onnx < 1.15,
which cannot share a venv with the main stack. ``onnxgate env create legacy``
builds it from the package registry; the mxnet and chainer converters run
their stage 1 there (see onnxgate.pipeline.envs.isolated).
"""

from __future__ import annotations

from onnxgate.plugins import EnvironmentSpec, hookimpl

LEGACY = EnvironmentSpec(
    name="legacy",
    # numpy 1.23.5 and onnx 1.14.1 publish wheels up to CPython 3.11
    python="python3.11",
    description="MXNet 1.9.1 + Chainer 7.8.1 (numpy 1.23, onnx 1.14)",
    constraints=("numpy==1.23.5", "onnx==1.14.1", "protobuf==3.20.3", "setuptools<70"),
    install_steps=(
        # numpy 1.24 removed np.bool, which mxnet 1.9 uses; onnx 1.15 dropped
        # what mxnet.onnx and onnx-chainer import
        ("numpy==1.23.5", "onnx==1.14.1", "protobuf==3.20.3", "setuptools<70", "wheel"),
        ("mxnet==1.9.1",),
        # chainer ships an sdist whose setup.py needs pkg_resources (setuptools < 70)
        ("--no-build-isolation", "chainer==7.8.1"),
        # onnx-chainer pins an onnx that no longer builds; 1.14 works with it
        ("--no-deps", "onnx-chainer==1.6.0"),
    ),
)


@hookimpl
def onnxgate_environments():
    yield LEGACY


def drop_initializer_inputs(model) -> None:
    """mxnet.onnx and onnx-chainer list every weight as a graph input too
    (pre-IR-4 style); onnxruntime then cannot constant-fold them and callers
    see dozens of "inputs". Weights are initializers only."""
    weights = {init.name for init in model.graph.initializer}
    kept = [inp for inp in model.graph.input if inp.name not in weights]
    if len(kept) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)

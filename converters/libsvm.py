"""libsvm -> ONNX with onnxmltools (through ``onnxmltools_compat``).

Sources: a model file written by ``svm-train``/``svm_save_model`` (libsvm's
text format, recognised by its ``svm_type`` header; suffixes ``.model`` and
``.libsvm``, or any name with ``--framework libsvm``) or an in-memory
``libsvm.svm.svm_model``. Inputs are dense float rows: column j is libsvm
feature index j+1.

Outputs: classifiers give ``label`` and ``probabilities`` (models trained with
``-b 1``) or ``decision_values``; regressors give ``value``. The original is
run through libsvm's C predict functions directly: libsvm-official 3.37's
``svmutil.svm_predict`` sizes its buffer wrongly for multi-class nu-SVC and
crashes the interpreter.
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl

from .common import ensure_float_features

SVM_TYPES = ("c_svc", "nu_svc", "one_class", "epsilon_svr", "nu_svr")
SUPPORTED_TYPES = ("c_svc", "nu_svc", "epsilon_svr", "nu_svr")
KERNELS = ("linear", "polynomial", "rbf", "sigmoid", "precomputed")
SUPPORTED_KERNELS = ("linear", "polynomial", "rbf", "sigmoid")
_CLASSIFIERS = (0, 1)  # libsvm's C_SVC, NU_SVC
DEFAULT_OPSET = 15


def sniff(path: Path) -> bool:
    from onnxgate.plugins import read_head

    first = read_head(path, 64).split(b"\n", 1)[0].strip().split()
    return len(first) == 2 and first[0] == b"svm_type" and first[1].decode("ascii", "replace") in SVM_TYPES


def check_text(text: str) -> dict:
    """Validate libsvm's model file format before its C parser sees it (the C
    reader trusts counts and can read past a truncated file). Returns the header."""
    from onnxgate.plugins import UsageError

    lines = text.splitlines()
    header: dict = {}
    for number, line in enumerate(lines, 1):
        key, _, value = line.strip().partition(" ")
        if key == "SV":
            break
        if not key:
            raise ValueError(f"line {number}: empty line in the header")
        header[key] = value.split()
    else:
        raise ValueError("no 'SV' line: the file is not a complete libsvm model")
    for key in ("svm_type", "kernel_type", "nr_class", "total_sv", "rho"):
        if key not in header:
            raise ValueError(f"the header has no {key!r} line")
    svm_type, kernel = header["svm_type"][0], header["kernel_type"][0]
    if svm_type not in SVM_TYPES or kernel not in KERNELS:
        raise ValueError(f"unknown svm_type {svm_type!r} or kernel_type {kernel!r}")
    if svm_type not in SUPPORTED_TYPES:
        raise UsageError(
            f"libsvm {svm_type} models are not supported (onnxmltools converts {', '.join(SUPPORTED_TYPES)})"
        )
    if kernel not in SUPPORTED_KERNELS:
        raise UsageError(f"libsvm {kernel} kernels are not supported: the kernel matrix is not part of the model")
    try:
        nr_class, total_sv = int(header["nr_class"][0]), int(header["total_sv"][0])
        [float(v) for v in header["rho"]]
    except (ValueError, IndexError):
        raise ValueError("nr_class, total_sv or rho is not a number") from None
    sv_lines = [ln for ln in lines[number:] if ln.strip()]
    if len(sv_lines) != total_sv:
        raise ValueError(
            f"the header announces {total_sv} support vectors, the file holds {len(sv_lines)} (truncated?)"
        )
    for offset, line in enumerate(sv_lines):
        fields = line.split()
        try:
            [float(v) for v in fields[: nr_class - 1]]
            [(int(i), float(v)) for i, v in (f.split(":") for f in fields[nr_class - 1 :])]
        except ValueError:
            raise ValueError(f"line {number + offset + 1}: not a support vector ('coef ... index:value ...')") from None
    return header


def load(path: Path, trusted: bool):
    from libsvm import svmutil

    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise ValueError("not a libsvm model file (not text)") from None
    check_text(text)
    model = svmutil.svm_load_model(str(path))
    if model is None:
        raise ValueError("libsvm could not read the model")
    return model


def _sv_features(model) -> int:
    return max((k for row in model.get_SV() for k in row if k > 0), default=0)


def signature(model, options=None):
    n_features = _sv_features(model)
    return [InputSpec(name="X", shape=(None, n_features), dtype="float32")] if n_features else None


def _check_model(model) -> None:
    from onnxgate.plugins import UsageError

    svm_type, kernel = model.get_svm_type(), model.param.kernel_type
    if SVM_TYPES[svm_type] not in SUPPORTED_TYPES:
        raise UsageError(f"libsvm {SVM_TYPES[svm_type]} models are not supported")
    if KERNELS[kernel] not in SUPPORTED_KERNELS:
        raise UsageError(f"libsvm {KERNELS[kernel]} kernels are not supported")


def _rename(onx, old: str, new: str) -> None:
    for node in onx.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
        node.input[:] = [new if n == old else n for n in node.input]
    for value in onx.graph.output:
        if value.name == old:
            value.name = new


def _fix_classifier(onx, model, n_features: int) -> None:
    """onnxmltools sorts the class labels but keeps the vectors, coefficients and
    rho in libsvm's (first-seen) label order, so unsorted labels come out wrong;
    declare them in the model's order. Pad support vectors to the input width."""
    import numpy as np
    from onnx import helper

    for node in onx.graph.node:
        if node.op_type not in ("SVMClassifier", "SVMRegressor"):
            continue
        attrs = {a.name: a for a in node.attribute}
        if "classlabels_ints" in attrs:
            del attrs["classlabels_ints"].ints[:]
            attrs["classlabels_ints"].ints.extend(int(v) for v in model.get_labels())
        vectors = np.asarray(attrs["support_vectors"].floats, dtype=np.float32).reshape(model.l, -1)
        if vectors.shape[1] < n_features:
            padded = np.zeros((model.l, n_features), dtype=np.float32)
            padded[:, : vectors.shape[1]] = vectors
            node.attribute.remove(attrs["support_vectors"])
            node.attribute.append(helper.make_attribute("support_vectors", padded.ravel().tolist()))


def _binary_probabilities(onx, model) -> None:
    """onnxruntime couples pairwise probabilities iteratively (tolerance
    0.005/k) even for two classes, up to ~3e-3 away from libsvm's closed form
    P(label[0]) = 1 / (1 + exp(A d + B)), clipped to [1e-7, 1 - 1e-7]. For
    binary models drop Platt scaling from the SVM node and compute that form
    from its decision value d (the node's second score column)."""
    from onnx import TensorProto, helper

    [node] = [n for n in onx.graph.node if n.op_type == "SVMClassifier"]
    for attr in [a for a in node.attribute if a.name in ("prob_a", "prob_b")]:
        node.attribute.remove(attr)
    probabilities, scores = node.output[1], "libsvm_decision_pair"
    node.output[1] = scores
    # onnx infers no type for SVMClassifier outputs; strict inference needs it
    onx.graph.value_info.append(helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["batch", 2]))
    consts = {"libsvm_one": [1], "libsvm_probA": [model.probA[0]], "libsvm_probB": [model.probB[0]]}
    for name, value in consts.items():
        onx.graph.initializer.append(helper.make_tensor(name, TensorProto.FLOAT, [1], value))
    for name, value in {"libsvm_col": [1], "libsvm_col_end": [2], "libsvm_axis": [1]}.items():
        onx.graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [1], value))
    onx.graph.initializer.append(helper.make_tensor("libsvm_min_p", TensorProto.FLOAT, [], [1e-7]))
    onx.graph.initializer.append(helper.make_tensor("libsvm_max_p", TensorProto.FLOAT, [], [1 - 1e-7]))
    onx.graph.node.extend(
        [
            helper.make_node("Slice", [scores, "libsvm_col", "libsvm_col_end", "libsvm_axis"], ["libsvm_d"]),
            helper.make_node("Mul", ["libsvm_d", "libsvm_probA"], ["libsvm_ad"]),
            helper.make_node("Add", ["libsvm_ad", "libsvm_probB"], ["libsvm_f"]),
            helper.make_node("Neg", ["libsvm_f"], ["libsvm_neg_f"]),
            helper.make_node("Sigmoid", ["libsvm_neg_f"], ["libsvm_p0_raw"]),
            helper.make_node("Clip", ["libsvm_p0_raw", "libsvm_min_p", "libsvm_max_p"], ["libsvm_p0"]),
            helper.make_node("Sub", ["libsvm_one", "libsvm_p0"], ["libsvm_p1"]),
            helper.make_node("Concat", ["libsvm_p0", "libsvm_p1"], [probabilities], axis=1),
        ]
    )


def convert(model, example, options):
    from onnxmltools.convert.common.data_types import FloatTensorType

    from .onnxmltools_compat import ensure_default_opset, libsvm_convert

    _check_model(model)
    X = ensure_float_features(example)
    n_features = max(int(X.shape[1]), _sv_features(model))
    onx = libsvm_convert()(
        model, "libsvm", [("X", FloatTensorType([None, n_features]))], "", options.opset or DEFAULT_OPSET
    )
    ensure_default_opset(onx, options.opset or DEFAULT_OPSET)
    _fix_classifier(onx, model, n_features)
    if model.get_svm_type() in _CLASSIFIERS and model.is_probability_model() and model.get_nr_class() == 2:
        _binary_probabilities(onx, model)
    outputs = [o.name for o in onx.graph.output]
    if model.get_svm_type() in _CLASSIFIERS:
        if not model.is_probability_model():
            _rename(onx, outputs[1], "decision_values")
        label = onx.graph.output[0].type.tensor_type.shape.dim
        del label[1:]  # onnxruntime returns labels as [N], not the declared [N, 1]
    else:
        _rename(onx, outputs[0], "value")
    for value in onx.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == "None":
                dim.dim_param = "batch"
    return Conversion(onx, exporter="onnxmltools.convert_libsvm (onnxgate compat layer)")


def run(model, inputs):
    """libsvm's own predictions, laid out like the ONNX outputs. Labels are
    libsvm's decision (voting) labels, as onnxruntime computes them, also for
    -b 1 models, whose most probable class can differ near the boundary."""
    import numpy as np
    from libsvm.svm import c_double, gen_svm_nodearray
    from libsvm.svm import libsvm as clib

    X = np.asarray(inputs["X"], dtype=np.float64)
    classifier = model.get_svm_type() in _CLASSIFIERS
    n_class = model.get_nr_class()
    probability = classifier and bool(model.is_probability_model())
    n_decision = n_class * (n_class - 1) // 2 if classifier else 1
    decision, probs = (c_double * n_decision)(), (c_double * n_class)()
    labels, values = [], []
    for row in X:
        nodes, _ = gen_svm_nodearray(row.tolist())
        labels.append(clib.svm_predict_values(model, nodes, decision))
        if probability:
            clib.svm_predict_probability(model, nodes, probs)
            values.append(probs[:n_class])
        else:
            values.append(decision[:n_decision])
    values = np.asarray(values, dtype=np.float64)
    if not classifier:
        return [values.reshape(-1, 1)]
    if not probability and n_class == 2:
        values = np.hstack([-values, values])  # onnxruntime's two-column layout of the one decision value
    return [np.asarray(labels, dtype=np.int64), values]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="libsvm",
        framework="libsvm",
        description="libsvm model files (C-SVC, nu-SVC, epsilon-SVR, nu-SVR) via onnxmltools",
        convert=convert,
        run=run,
        load=load,
        inputs=signature,
        suffixes=(".model", ".libsvm"),
        sniff=sniff,
        object_types=("libsvm.svm.svm_model",),
        # onnxruntime computes kernels in float32; an SVR's value carries the
        # target's scale, covered by rtol
        tolerance=Tolerance(rtol=1e-4, atol=1e-4),
        requires=("libsvm-official", "onnxmltools"),
        framework_distribution="libsvm-official",
        default_opset=DEFAULT_OPSET,
    )

"""Compatibility layer for onnxmltools 1.16's broken CoreML and libsvm paths.

onnxmltools 1.16.0 ships both converters, but neither imports against the
libraries of today:

CoreML (onnx/onnxmltools#735; upstream fix in open PR #776):
  * ``coreml/_parse.py`` imports ``find_type_conversion``, deleted from
    ``common.data_types``. Its one call site joins a pipeline's stages and the
    declared operator is always the identity: we provide exactly that.
  * neural-network shape calculators import ``check_input_and_output_numbers``
    and ``check_input_and_output_types`` from ``common.utils``; they live in
    ``common.shape_calculator``.
  * neural-network operator converters do ``from onnx import onnx_proto``,
    an alias onnx removed; it only served ``onnx_proto.TensorProto``.
  * ``coreml/convert.py`` never imports the modules that register the shape
    calculators and operator converters, so nothing converts; we import them.

libsvm:
  * ``libsvm-official`` >= 3.36 moved ``C_SVC``, ``RBF``... into the IntEnums
    ``svm_forms`` and ``kernel_names``; onnxmltools reads them as module
    attributes of ``libsvm.svm``. We add the old names (same values) if absent.
  * ``libsvm/_parse.py`` imports ``common.data_types.data_types``, a module
    path that no longer exists (``data_types`` is a module, not a package).
  * ``libsvm/operator_converters`` imports ``cast_list``, removed from
    ``common.utils``.
  * ``convert_libsvm`` checks for the pre-3.x top-level ``svm``/``svmutil``
    modules and says "libsvm is not installed": we call the inner
    ``onnxmltools.convert.libsvm.convert`` instead (no patch needed).

Every patch only ADDS a missing name (never replaces one that exists), so
once upstream fixes a path the patch becomes a no-op. ``tests/test_coreml.py``
and ``tests/test_libsvm.py`` assert that the unpatched imports still fail, in a
fresh interpreter: when one of those tests starts failing, upstream has fixed
the path and the matching part of this module should be deleted.

Applied lazily from the converters' ``convert`` callables, never at import.
"""

from __future__ import annotations

import importlib
import sys
import threading

_lock = threading.Lock()
_done: set = set()

_COREML_REGISTRATIONS = (
    "onnxmltools.convert.coreml.shape_calculators",
    "onnxmltools.convert.coreml.shape_calculators.neural_network",
    "onnxmltools.convert.coreml.operator_converters",
    "onnxmltools.convert.coreml.operator_converters.neural_network",
)


def _add(obj, name: str, value) -> None:
    """Set ``obj.name`` only when upstream does not provide it."""
    if not hasattr(obj, name):
        setattr(obj, name, value)


def _add_module_alias(name: str, module) -> None:
    sys.modules.setdefault(name, module)


def _common() -> None:
    import onnx
    import onnxmltools.convert.common.data_types as data_types
    import onnxmltools.convert.common.shape_calculator as shape_calculator
    import onnxmltools.convert.common.utils as utils

    # coreml: a pipeline stage feeds the next one unchanged
    _add(data_types, "find_type_conversion", lambda source_type, target_type: "identity")
    _add(utils, "check_input_and_output_numbers", shape_calculator.check_input_and_output_numbers)
    _add(utils, "check_input_and_output_types", shape_calculator.check_input_and_output_types)
    _add(utils, "cast_list", lambda kind, values: [kind(v) for v in values])
    # `from onnx import onnx_proto` falls back to sys.modules["onnx.onnx_proto"];
    # an alias there leaves the onnx module itself untouched.
    if not hasattr(onnx, "onnx_proto"):
        _add_module_alias("onnx.onnx_proto", onnx)
    _add_module_alias("onnxmltools.convert.common.data_types.data_types", data_types)


def _once(key: str, fn) -> None:
    with _lock:
        if key not in _done:
            fn()
            _done.add(key)


def ensure_default_opset(onx, opset: int) -> None:
    """onnxmltools imports only ai.onnx.ml when a model has no standard op, so
    the report would show opset 0; declare the default domain's opset too."""
    from onnx import helper

    if not any(imp.domain in ("", "ai.onnx") for imp in onx.opset_import):
        onx.opset_import.append(helper.make_opsetid("", opset))


def coreml_convert():
    """onnxmltools' CoreML ``convert(spec, name, initial_types, doc_string, target_opset, ...)``."""

    def patch() -> None:
        _common()
        for module in _COREML_REGISTRATIONS:
            importlib.import_module(module)

    _once("coreml", patch)
    from onnxmltools.convert.coreml.convert import convert

    return convert


def libsvm_convert():
    """onnxmltools' libsvm ``convert(model, name, initial_types, doc_string, target_opset, ...)``."""

    def patch() -> None:
        from libsvm import svm

        for member in svm.svm_forms:
            _add(svm, member.name, member)
        for member in svm.kernel_names:
            _add(svm, member.name, member)
        _common()

    _once("libsvm", patch)
    from onnxmltools.convert.libsvm.convert import convert

    return convert

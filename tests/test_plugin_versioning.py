"""The plugin API version: declared ranges, and old-style plugins that keep
working with a DeprecationWarning."""

import re
import warnings

import numpy as np
import pytest

from onnxgate.plugins import API_VERSION, Conversion, ConverterSpec, InputSpec, hookimpl
from onnxgate.plugins.manager import PluginError, Registry, get_plugin_manager
from onnxgate.plugins.versioning import SpecifierError, supports


@pytest.mark.parametrize(
    "spec, version, expected",
    [
        (">=1.1,<2", "1.1", True),
        (">=1.1,<2", "1.0", False),
        (">=1.1,<2", "2.0", False),
        (">=1", "1.1", True),
        ("==1.1", "1.1.0", True),
        ("!=1.1", "1.1", False),
        ("<1.10", "1.9", True),
    ],
)
def test_specifiers(spec, version, expected):
    assert supports(spec, version) is expected


@pytest.mark.parametrize("bad", ["", "1.1", ">=one", "~=1.1"])
def test_unreadable_specifiers_are_errors(bad):
    with pytest.raises(SpecifierError):
        supports(bad, "1.1")


def test_api_version_is_a_version_number():
    assert supports(f"=={API_VERSION}", API_VERSION)


class FuturePlugin:
    ONNXGATE_API = ">=2,<3"

    @hookimpl
    def onnxgate_converters(self):
        return []


def test_a_plugin_for_another_api_is_refused_with_a_clear_message():
    with pytest.raises(
        PluginError, match=rf"supports onnxgate plugin API >=2,<3, this onnxgate provides {re.escape(API_VERSION)}"
    ):
        get_plugin_manager([FuturePlugin()], load_entry_points=False)


class Model:
    width = 3


def _old_style_spec():
    # API 1.0: inputs(model), no options
    return ConverterSpec(
        name="old",
        framework="Old",
        convert=lambda m, e, o: Conversion(None, "x"),
        run=None,
        object_types=(f"{__name__}.Model",),
        inputs=lambda model: [InputSpec("x", (None, model.width))],
    )


class OldStylePlugin:
    @hookimpl
    def onnxgate_converters(self):
        return [_old_style_spec()]


def test_old_style_inputs_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"inputs\(model\) is the old form; write inputs\(model, options\)"):
        registry = Registry(get_plugin_manager([OldStylePlugin()], load_entry_points=False))
    spec = registry.converter("old")
    assert spec.inputs(Model(), None) == [InputSpec("x", (None, 3))]
    assert registry.pm.deprecations["OldStylePlugin"], "plugins check reports it"


def test_an_old_style_plugin_converts_end_to_end(tmp_path):
    from onnx import TensorProto, helper

    from onnxgate.pipeline import convert

    def to_onnx(model, example, options):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        )
        return Conversion(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "test")

    class Plugin:
        @hookimpl
        def onnxgate_converters(self):
            yield ConverterSpec(
                name="old",
                framework="Old",
                convert=to_onnx,
                run=lambda m, inputs: [np.maximum(inputs["x"], 0)],
                object_types=(f"{__name__}.Model",),
                inputs=lambda model: [InputSpec("x", (None, model.width))],
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        registry = Registry(get_plugin_manager([Plugin()], load_entry_points=False))
    result = convert(Model(), registry=registry, latency=False)
    assert result.passed, result.report["failures"]


def test_new_style_inputs_get_the_options():
    seen = []
    spec = ConverterSpec(
        name="new",
        framework="New",
        convert=lambda m, e, o: Conversion(None, "x"),
        run=None,
        inputs=lambda model, options: seen.append(options) or [],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the current form never warns
        spec.inputs(object(), "OPTIONS")
    assert seen == ["OPTIONS"]

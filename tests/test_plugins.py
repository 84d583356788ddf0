"""The plugin system: registration, conflicts, misspelled hooks, disabling, detection."""

import subprocess
import sys

import pytest

from onnxgate.plugins import Conversion, ConverterSpec, detect, hookimpl
from onnxgate.plugins.manager import DISABLE_ENV, PluginError, Registry, get_plugin_manager


def _spec(name, **kw):
    return ConverterSpec(
        name=name, framework=name, convert=lambda m, e, o: Conversion(None, "x"), run=lambda m, i: [], **kw
    )


class PluginA:
    @hookimpl
    def onnxgate_converters(self):
        return [_spec("dup", suffixes=(".a",))]


class PluginB:
    @hookimpl
    def onnxgate_converters(self):
        return [_spec("Dup", suffixes=(".b",))]


class Misspelled:
    @hookimpl
    def onnxgate_converter(self):  # missing "s": must be an error, not silently ignored
        return []


def test_builtins_register_through_entry_points():
    registry = Registry()
    assert {"sklearn", "torch"} <= {s.name for s in registry.converters()}
    assert registry.plugin_of("sklearn") == "sklearn"


def test_two_plugins_claiming_one_name_is_an_error_naming_both():
    pm = get_plugin_manager([PluginA(), PluginB()], load_entry_points=False)
    with pytest.raises(PluginError) as err:
        Registry(pm)
    message = str(err.value)
    assert "'dup'" in message and "'PluginA'" in message and "'PluginB'" in message


def test_misspelled_hook_is_an_error():
    with pytest.raises(PluginError, match="onnxgate_converter"):
        get_plugin_manager([Misspelled()], load_entry_points=False)


def test_environment_variable_disables_named_plugins(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "torch, other")
    names = {s.name for s in Registry().converters()}
    assert "torch" not in names and "sklearn" in names


def test_names_are_normalised():
    assert _spec("My_Conv").name == "my-conv"
    with pytest.raises(ValueError):
        _spec("bad name!")


class Base:
    pass


class Child(Base):
    pass


def test_object_detection_prefers_the_closest_class():
    base = _spec("base", object_types=(f"{__name__}.Base",))
    child = _spec("child", object_types=(f"{__name__}.Child",))
    assert detect.for_object(Child(), [base, child]).name == "child"
    assert detect.for_object(Base(), [base, child]).name == "base"
    with pytest.raises(detect.DetectionError):
        detect.for_object(object(), [base, child])


def test_file_detection_uses_suffix_then_sniff(tmp_path):
    yes = _spec("yes", suffixes=(".j",), sniff=lambda p: p.read_bytes().startswith(b"Y"))
    no = _spec("no", suffixes=(".j",), sniff=lambda p: p.read_bytes().startswith(b"N"))
    f = tmp_path / "m.j"
    f.write_bytes(b"Y...")
    assert detect.for_path(f, [yes, no]).name == "yes"
    f.write_bytes(b"?...")
    with pytest.raises(detect.DetectionError):
        detect.for_path(f, [yes, no])


def test_xgboost_like_objects_are_not_claimed_by_sklearn_when_more_specific(tmp_path):
    # sklearn claims BaseEstimator; a converter declaring a subclass wins.
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    registry = Registry()
    special = _spec("special", object_types=("sklearn.linear_model._base.LinearRegression",))
    assert detect.for_object(LinearRegression(), registry.converters() + [special]).name == "special"


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"]])
def test_help_and_plugins_import_no_framework(argv):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['onnxgate'] + {argv!r}\n"
        "try:\n"
        "    runpy.run_module('onnxgate.pipeline.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'tensorflow', 'sklearn', 'keras', 'xgboost', 'lightgbm', 'catboost', 'skl2onnx', 'tf2onnx',\n"
        "         'onnx', 'onnxruntime')\n"
        "print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"

"""A broken plugin (import fails, hook raises, returns no spec, wrong API
version) is listed as broken and breaks nobody else; selecting it is a clean
exit-2 error saying why; a plugin failing inside load/convert/run is named,
with its distribution, in the error and in the batch report."""

import json
import os
import textwrap

import numpy as np
import pytest
from test_third_party_plugin import PLUGIN as AFFINE_PLUGIN

from onnxgate.plugins import API_VERSION
from onnxgate.plugins.testing import assert_clean_error, run_cli

BROKEN = {
    # entry-point name: (distribution, module source)
    "brokenimport": ("broken-import", "import missing_dependency_xyz\n"),
    "hookraises": (
        "hook-raises",
        textwrap.dedent("""
        from onnxgate.plugins import hookimpl

        @hookimpl
        def onnxgate_converters():
            raise RuntimeError("cannot find my config file")
    """),
    ),
    "badreturn": (
        "bad-return",
        textwrap.dedent("""
        from onnxgate.plugins import Conversion, ConverterSpec, hookimpl

        @hookimpl
        def onnxgate_converters():
            yield ConverterSpec(name="badreturn", framework="Bad", suffixes=(".badret",),
                                convert=lambda m, e, o: Conversion(None, "x"), run=None, load=lambda p, t: None)
            yield {"name": "not-a-spec"}
    """),
    ),
    "futureapi": (
        "future-api",
        textwrap.dedent("""
        from onnxgate.plugins import hookimpl
        ONNXGATE_API = ">=2,<3"

        @hookimpl
        def onnxgate_converters():
            return []
    """),
    ),
    "misspelt": (
        "misspelt",
        textwrap.dedent("""
        from onnxgate.plugins import hookimpl

        @hookimpl
        def onnxgate_converter():
            return []
    """),
    ),
    # works at registration, fails inside convert: the error must name it
    "failing": (
        "failing-plugin",
        AFFINE_PLUGIN.replace('name="affine"', 'name="failing"')
        .replace('suffixes=(".affine",)', 'suffixes=(".failing",)')
        .replace('object_types=("affine_plugin.Affine",)', "object_types=()")
        .replace(
            "def convert(model, example, options):",
            'def convert(model, example, options):\n    raise ValueError("op Foo unsupported")',
        ),
    ),
}


def _install(site, module, dist, version, entry_points):
    (site / f"{module}.py").write_text(module_source(module))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[onnxgate]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def module_source(module):
    if module == "affine_plugin":
        return AFFINE_PLUGIN
    return BROKEN[module.removesuffix("_plugin")][1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    _install(root, "affine_plugin", "affine-plugin", "0.3", {"affine": "affine_plugin"})
    for name, (dist, _) in BROKEN.items():
        _install(root, f"{name}_plugin", dist, "1.2", {name: f"{name}_plugin"})
    return root


@pytest.fixture(scope="module")
def env(site):
    return dict(os.environ, PYTHONPATH=str(site))


@pytest.fixture(scope="module")
def affine_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "m.affine"
    with open(path, "wb") as fh:
        np.savez(fh, W=np.arange(12, dtype=np.float32).reshape(4, 3) / 7, b=np.ones(3, np.float32))
    return path


def test_broken_plugins_are_listed_with_distribution_version_and_error(env):
    proc = run_cli("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["affine"]["usable"] and rows["sklearn"]["usable"]
    expected = {
        "brokenimport": "import of brokenimport_plugin failed: "
        "ModuleNotFoundError: No module named 'missing_dependency_xyz'",
        "hookraises": "onnxgate_converters() raised RuntimeError: cannot find my config file",
        "badreturn": "onnxgate_converters() returned a dict, not a ConverterSpec",
        "misspelt": "unknown hook implementation onnxgate_converter (misspelled?)",
    }
    for name, error in expected.items():
        assert rows[name]["broken"] == error and not rows[name]["usable"], rows[name]
        assert rows[name]["from"] == f"{BROKEN[name][0]} 1.2"
    assert f"supports onnxgate plugin API >=2,<3, this onnxgate provides {API_VERSION}" in rows["futureapi"]["broken"]
    assert "badreturn" not in {r["name"] for r in rows.values() if r["usable"]}
    table = run_cli("plugins", env=env)
    assert table.returncode == 0
    assert "broken: onnxgate_converters() raised RuntimeError: cannot find my config file" in table.stdout


def test_converting_with_another_plugin_still_works(env, affine_file, tmp_path):
    report = tmp_path / "m.json"
    proc = run_cli("convert", str(affine_file), "-o", str(tmp_path / "m.onnx"), "--report", str(report), env=env)
    assert proc.returncode == 0, proc.stderr
    converter = json.loads(report.read_text())["converter"]
    assert (converter["plugin"], converter["distribution"], converter["version"]) == ("affine", "affine-plugin", "0.3")


@pytest.mark.parametrize(
    "framework, why",
    [
        ("brokenimport", "plugin 'brokenimport' (broken-import 1.2) is broken: import of brokenimport_plugin failed"),
        ("hookraises", "plugin 'hookraises' (hook-raises 1.2) is broken: onnxgate_converters() raised RuntimeError"),
        ("badreturn", "plugin 'badreturn' (bad-return 1.2) is broken: onnxgate_converters() returned a dict"),
    ],
)
def test_selecting_a_broken_plugin_is_a_usage_error_saying_why(env, affine_file, tmp_path, framework, why):
    out = tmp_path / "m.onnx"
    proc = run_cli("convert", str(affine_file), "-o", str(out), "--framework", framework, env=env)
    assert_clean_error(proc, 2)
    assert why in proc.stderr and not out.exists()


def test_detecting_a_broken_plugins_format_says_why(env, tmp_path):
    source = tmp_path / "m.badret"
    source.write_bytes(b"data")
    proc = run_cli("convert", str(source), "-o", str(tmp_path / "m.onnx"), env=env)
    assert_clean_error(proc, 2)
    assert "converter 'badreturn' reads it, but plugin 'badreturn' (bad-return 1.2) is broken" in proc.stderr


def test_failure_inside_convert_names_plugin_and_distribution(env, affine_file, tmp_path):
    source = tmp_path / "m.failing"
    source.write_bytes(affine_file.read_bytes())
    proc = run_cli("convert", str(source), "-o", str(tmp_path / "m.onnx"), env=env)
    assert_clean_error(proc, 3)
    assert (
        "failing conversion failed (plugin 'failing' from failing-plugin 1.2): ValueError: op Foo unsupported"
        in proc.stderr
    )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"models": [{"name": "bad", "source": str(source)}, {"name": "good", "source": str(affine_file)}]})
    )
    proc = run_cli("batch", str(manifest), "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 3, proc.stderr
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["models"]}
    assert "plugin 'failing' from failing-plugin 1.2" in rows["bad"]["message"]
    assert rows["good"]["exit_code"] == 0


def test_plugins_check_reports_what_is_wrong(env):
    good = run_cli("plugins", "check", "affine", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "detection imports no framework" in good.stdout and "result: ok" in good.stdout
    # an old-style plugin works, and check says what to change
    assert "WARN  deprecated: converter 'affine': inputs(model) is the old form" in good.stdout
    bad = run_cli("plugins", "check", "hookraises", env=env)
    assert bad.returncode == 1
    assert "FAIL  broken: onnxgate_converters() raised RuntimeError: cannot find my config file" in bad.stdout
    # by converter name, a spec that did come back from a broken plugin
    assert run_cli("plugins", "check", "badreturn", env=env).returncode == 1
    assert_clean_error(run_cli("plugins", "check", "no-such-plugin", env=env), 2)


HEAVY = textwrap.dedent("""
    import fakefw  # at module level: detection pays for the framework
    from onnxgate.plugins import Conversion, ConverterSpec, hookimpl

    @hookimpl
    def onnxgate_converters():
        yield ConverterSpec(name="heavy", framework="FakeFW", convert=lambda m, e, o: Conversion(None, "x"),
                            run=None, load=lambda p, t: None, suffixes=(".fake",),
                            requires=("fakefw", "notinstalled-dist", "fakefw>=2"))
""")
CLASH = textwrap.dedent("""
    from onnxgate.plugins import Conversion, ConverterSpec, hookimpl

    @hookimpl
    def onnxgate_converters():
        yield ConverterSpec(name="heavy", framework="Other", convert=lambda m, e, o: Conversion(None, "x"),
                            run=None, object_types=("other.Model",))
""")


def test_plugins_check_finds_framework_imports_requirements_and_clashes(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fakefw.py").write_text("VERSION = 1\n")
    info = site / "fakefw-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakefw\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fakefw\n")
    for module, dist, text in (("heavy_plugin", "heavy-plugin", HEAVY), ("clash_plugin", "clash-plugin", CLASH)):
        (site / f"{module}.py").write_text(text)
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[onnxgate]\n{module.split('_')[0]} = {module}\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = run_cli("plugins", "check", "heavy", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for line in (
        "FAIL  onnxgate_converters: name 'heavy' is also claimed by plugin 'clash'",
        "FAIL  converter 'heavy': requires 'notinstalled-dist', which is not installed here",
        "FAIL  converter 'heavy': requires 'fakefw>=2' is not a distribution name",
        "FAIL  detection imports fakefw: import the framework inside the spec's callables",
    ):
        assert line in proc.stdout, proc.stdout
    # the clash itself stays an error for every other command, naming both
    listed = run_cli("plugins", env=env)
    assert_clean_error(listed, 2)
    assert "'heavy' is claimed by both plugin" in listed.stderr

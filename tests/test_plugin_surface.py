"""One plugin surface: comparison rules, report formats, converter options and
deploy-target flags all come from plugins through ``pm.hook``, and a
third-party plugin extends each of them exactly as the built-ins do."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.gate.config import GateConfig, OutputRule, parse_rule, rule_keys
from onnxgate.pipeline.report import document, formats
from onnxgate.plugins import CompareRule, OptionSpec, ReportFormat, Tolerance, UsageError, hookimpl, parse_options
from onnxgate.plugins.manager import DISABLE_ENV, PluginError, Registry, get_plugin_manager

pytest.importorskip("sklearn")

# A third-party plugin: a comparison rule with its own key, a report format,
# and a deploy target with its own flags. Used inline (in-process) and
# installed as a distribution (CLI, in a fresh interpreter).
PLUGIN = textwrap.dedent('''
    import numpy as np
    from onnxgate.plugins import CompareRule, DeployTargetSpec, OptionSpec, ReportFormat, hookimpl

    class WorstRow(CompareRule):
        """Regression-like outputs (one float per row), judged by their worst row."""
        name = "worst-row"
        priority = 50
        keys = (OptionSpec("max_row_err", float, help="largest absolute error any row may have"),)

        def matches(self, actual, expected):
            arr = np.asarray(expected)
            return arr.dtype.kind == "f" and arr.ndim == 1

        def metrics(self, actual, expected, result, settings):
            diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            return {"worst_row_err": float(diff.max()) if diff.size else 0.0}

        def check(self, metrics, settings):
            limit = settings.get("max_row_err")
            if limit is not None and metrics["worst_row_err"] > limit:
                return [f"worst row error {metrics['worst_row_err']:.3g} > {limit:g}"]
            return []

    def render_csv(report):
        rows = [f"{o['name']},{o['task']},{o['passed']}" for c in report["cases"] for o in c["outputs"]]
        return "output,task,passed\\n" + "\\n".join(rows) + "\\n"

    def deploy_echo(request):
        return {"passed": True, "name": request.name, "greeting": request.options["greeting"],
                "loud": request.options.get("loud", False)}

    @hookimpl
    def onnxgate_compare_rules():
        yield WorstRow()

    @hookimpl
    def onnxgate_report_formats():
        yield ReportFormat(name="csv", suffix=".csv", render=render_csv)

    @hookimpl
    def onnxgate_deploy_targets():
        yield DeployTargetSpec(name="echo", deploy=deploy_echo, options=(
            OptionSpec("greeting", str, "hello", help="what the echo target answers"),
            OptionSpec("loud", bool, help="shout it"),
        ))
''')


def _inline_plugin():
    namespace = {}
    exec(compile(PLUGIN, "worst_row_plugin", "exec"), namespace)
    return type("WorstRowPlugin", (), {k: staticmethod(v) for k, v in namespace.items() if k.startswith("onnxgate_")})()


@pytest.fixture(scope="module")
def ridge():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    return Ridge().fit(X, y)


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_manager([_inline_plugin()]))


def test_an_inline_rule_judges_by_output_kind_and_its_key_gates(ridge, registry):
    result = api.convert(ridge, registry=registry, latency=False)
    out = result.report.to_dict()["cases"][0]["outputs"][0]
    assert out["task"] == "worst-row" and out["metrics"]["worst_row_err"] >= 0 and result.passed
    document.validate_schema(result.report)  # a plugin's metrics fit the published schema
    keys = rule_keys(registry.compare_rules())
    assert keys["max_row_err"].type is float
    tight = GateConfig(outputs=dict([parse_rule("variable:max_row_err=0", keys)]))
    failed = api.convert(ridge, registry=registry, latency=False, gate=tight)
    if out["metrics"]["worst_row_err"] > 0:  # float32 onnxruntime vs float64 sklearn
        assert not failed.passed
        assert "worst row error" in failed.report.to_dict()["cases"][0]["outputs"][0]["reason"]


def test_a_named_rule_wins_over_matching_and_unknown_names_are_usage_errors(ridge, registry):
    gate = GateConfig(outputs={"variable": OutputRule(rule="tensor")})
    result = api.convert(ridge, registry=registry, latency=False, gate=gate)
    assert result.report.to_dict()["cases"][0]["outputs"][0]["task"] == "tensor"
    with pytest.raises(UsageError, match="unknown comparison rule 'nosuch'.*worst-row"):
        api.convert(
            ridge, registry=registry, latency=False, gate=GateConfig(outputs={"variable": OutputRule(rule="nosuch")})
        )


def test_an_inline_report_format_renders_the_report(ridge, registry, tmp_path):
    result = api.convert(ridge, registry=registry, latency=False)
    resolved = formats.resolve([("csv", tmp_path / "r.csv"), ("markdown", tmp_path / "r.md")], registry)
    formats.write(result.report, resolved)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "output,task,passed" and lines[1].startswith("variable,worst-row,True")
    assert "variable" in (tmp_path / "r.md").read_text()
    with pytest.raises(UsageError, match="unknown report format 'pdf'.*csv"):
        formats.resolve([("pdf", tmp_path / "r.pdf")], registry)


class _Clash:
    @hookimpl
    def onnxgate_compare_rules(self):
        yield type("T", (CompareRule,), {"name": "tensor"})()

    @hookimpl
    def onnxgate_report_formats(self):
        yield ReportFormat(name="html", suffix=".htm", render=str)


def test_a_name_clash_is_an_error_naming_both_plugins():
    with pytest.raises(PluginError, match=r"'tensor' is claimed by both plugin '\w+' and plugin '\w+'") as err:
        Registry(get_plugin_manager([_Clash()]))
    assert "'_Clash'" in str(err.value) and "'rules'" in str(err.value)


def test_two_rules_declaring_one_key_with_two_types_is_an_error():
    one = type("A", (CompareRule,), {"name": "a", "keys": (OptionSpec("k", int),)})()
    two = type("B", (CompareRule,), {"name": "b", "keys": (OptionSpec("k", float),)})()
    with pytest.raises(PluginError, match="'a' and 'b' declare key 'k'"):
        rule_keys([one, two])


class _DropEmbeddings:
    """A hookwrapper: it sees and edits every plugin's declared rules."""

    @hookimpl(wrapper=True)
    def onnxgate_compare_rules(self):
        declared = yield
        return [[rule for rule in rules if rule.name != "embedding"] for rules in declared]


def test_hooks_are_called_through_pluggy_so_wrappers_and_blocking_apply(monkeypatch):
    wrapped = Registry(get_plugin_manager([_DropEmbeddings()]))
    assert "embedding" not in {r.name for r in wrapped.compare_rules()}
    assert "classifier-label" in {r.name for r in wrapped.compare_rules()}
    monkeypatch.setenv(DISABLE_ENV, "formats")
    assert Registry().report_formats() == []


def test_embeddings_are_judged_by_the_next_rule_when_theirs_is_removed():
    from onnxgate.pipeline.gate import tasks

    actual = {"e": np.ones((4, 8), np.float32)}
    expected = {"e": np.ones((4, 8), np.float32) * 2}
    rules = tuple(Registry(get_plugin_manager([_DropEmbeddings()])).compare_rules())
    with_rule, _ = tasks.compare_case(actual, expected, Tolerance(), GateConfig())
    without, _ = tasks.compare_case(actual, expected, Tolerance(), GateConfig(rules=rules))
    assert with_rule[0]["task"] == "embedding" and "cosine_min" in with_rule[0]["metrics"]
    assert without[0]["task"] == "regression" and "cosine_min" not in without[0]["metrics"]
    assert "mean_abs_err" in without[0]["metrics"]
    # no rule plugin at all (ONNXGATE_DISABLE_PLUGINS=rules): plain elementwise comparison
    bare, _ = tasks.compare_case(actual, expected, Tolerance(), GateConfig(rules=()))
    assert (
        bare[0]["task"] == "tensor" and not bare[0]["passed"] and set(bare[0]["metrics"]) == {"rows", "rows_mismatched"}
    )


def test_converter_options_are_declared_typed_and_checked():
    spec = Registry().converter("sklearn")
    assert [o.name for o in spec.options] == ["zipmap", "trust_types", "locale"]
    assert parse_options(spec.options, {"zipmap": "true"}, "converter 'sklearn'") == {"zipmap": True}
    assert parse_options(spec.options, {}, "x") == {"zipmap": False}  # options without a default stay unset
    count = OptionSpec("count", int, 3)
    assert parse_options((count,), {"count": "7"}, "x") == {"count": 7}
    with pytest.raises(UsageError, match=r"option count='many' is not a int \(known: count \(int, default 3\)\)"):
        parse_options((count,), {"count": "many"}, "converter 'x'")
    with pytest.raises(UsageError, match="has no option 'nosuch'"):
        parse_options((count,), {"nosuch": 1}, "converter 'x'")
    assert Registry().converter("mxnet").options[0].name == "params"
    assert Registry().converter("chainer").options[0].name == "model"


def test_the_python_api_checks_options_like_the_cli(ridge):
    with pytest.raises(UsageError, match="has no option 'nosuch'"):
        api.convert(ridge, options={"nosuch": 1})
    with pytest.raises(UsageError, match="option zipmap=3 is not a bool"):
        api.convert(ridge, options={"zipmap": 3})


def test_zipmap_option_reaches_skl2onnx_and_the_gate_still_compares():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    result = api.convert(LogisticRegression(max_iter=300).fit(X, y), options={"zipmap": True}, latency=False)
    assert "ZipMap" in {n.op_type for n in result.model.graph.node} and result.passed
    tasks = {o["name"]: o for o in result.report.to_dict()["cases"][0]["outputs"]}
    assert tasks["output_probability"]["task"] == "classifier-probabilities"
    assert "ZipMap" in tasks["output_probability"]["normalised"]


def test_plugins_name_describes_one_converter(capsys):
    assert cli.main(["plugins", "sklearn"]) == 0
    text = capsys.readouterr().out
    assert "zipmap (bool, default False)" in text and ".skops" in text and "rtol=0.0001" in text
    assert cli.main(["plugins", "sklearn", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["options"][0] == {
        "name": "zipmap",
        "type": "bool",
        "default": False,
        "help": described["options"][0]["help"],
    }
    assert [o["name"] for o in described["options"]] == ["zipmap", "trust_types", "locale"]
    assert described["requires"] == ["scikit-learn", "skl2onnx"]
    assert cli.main(["plugins"]) == 0
    listing = capsys.readouterr().out
    assert "comparison rules: classifier-label, classifier-probabilities, embedding" in listing
    assert "report formats:   html, json, junit, markdown" in listing and "deploy targets:   azureml, local" in listing
    assert cli.main(["plugins", "nosuch"]) == 2
    assert capsys.readouterr().err.strip().startswith("onnxgate: error: unknown framework 'nosuch'")


@pytest.mark.parametrize(
    "option, message",
    [
        (
            "nosuch=1",
            "converter 'sklearn' has no option 'nosuch' (known: zipmap (bool, default False), "
            "trust_types (str), locale (str))",
        ),
        ("zipmap=notabool", "converter 'sklearn': option zipmap='notabool' is not a bool"),
    ],
)
def test_bad_converter_options_exit_2_with_one_line(ridge, tmp_path, capsys, option, message):
    import skops.io as sio

    sio.dump(ridge, tmp_path / "m.skops")
    code = cli.main(["convert", str(tmp_path / "m.skops"), "-o", str(tmp_path / "m.onnx"), "--option", option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The plugin installed the way pip would (a dist-info with entry points)."""
    site = tmp_path_factory.mktemp("site")
    (site / "worst_row_plugin.py").write_text(PLUGIN)
    dist = site / "worst_row_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: worst-row-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[onnxgate]\nworst-row = worst_row_plugin\n")
    return dict(os.environ, PYTHONPATH=str(site))


def _cli(env, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "onnxgate.pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_installed_rule_key_format_and_deploy_flag_work_from_the_cli(installed, ridge, tmp_path):
    import skops.io as sio

    sio.dump(ridge, tmp_path / "m.skops")
    convert = [
        "convert",
        str(tmp_path / "m.skops"),
        "-o",
        str(tmp_path / "m.onnx"),
        "--no-latency",
        "--report",
        str(tmp_path / "r.json"),
    ]
    # the plugin's rule is picked by output kind, its key parses, its format writes
    proc = _cli(
        installed, *convert, "--tolerance", "variable:max_row_err=1e-12", "--format", f"csv={tmp_path / 'r.csv'}"
    )
    report = json.loads((tmp_path / "r.json").read_text())
    out = report["cases"][0]["outputs"][0]
    assert out["task"] == "worst-row"
    assert proc.returncode == (1 if out["metrics"]["worst_row_err"] > 1e-12 else 0), proc.stderr
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith("variable,worst-row,")
    proc = _cli(installed, *convert, "--tolerance", "variable:max_row_err=1")
    assert proc.returncode == 0, proc.stderr
    helptext = _cli(installed, "convert", "--help").stdout
    assert "max_row_err" in helptext and "worst-row" in helptext

    # the plugin's deploy target has flags of its own, with defaults
    assert "--greeting GREETING" in _cli(installed, "deploy", "--help").stdout
    model = str(tmp_path / "m.onnx")
    proc = _cli(
        installed,
        "deploy",
        model,
        "--target",
        "echo",
        "--greeting",
        "hi",
        "--loud",
        "--report",
        str(tmp_path / "d.json"),
    )
    assert proc.returncode == 0, proc.stderr
    deployed = json.loads((tmp_path / "d.json").read_text())
    assert deployed["greeting"] == "hi" and deployed["loud"] is True
    proc = _cli(installed, "deploy", model, "--target", "echo", "--report", str(tmp_path / "d.json"))
    assert proc.returncode == 0 and json.loads((tmp_path / "d.json").read_text())["greeting"] == "hello"
    proc = _cli(installed, "deploy", model, "--target", "local", "--greeting", "hi", "--dry-run")
    assert proc.returncode == 2 and "--greeting: not an option of --target local" in proc.stderr
    # unknown format: exit 2 before any work
    proc = _cli(installed, *convert, "--format", f"pdf={tmp_path / 'r.pdf'}")
    assert proc.returncode == 2 and "unknown report format 'pdf'" in proc.stderr


def test_converters_import_the_plugin_package_not_its_modules():
    from test_architecture import graph

    offenders = {
        name: sorted(t for t in targets if t.startswith("onnxgate.plugins."))
        for name, targets in graph().items()
        if name.startswith("onnxgate.converters")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


class _GreedyTarget:
    @hookimpl
    def onnxgate_deploy_targets(self):
        from onnxgate.plugins import DeployTargetSpec

        yield DeployTargetSpec(name="greedy", deploy=lambda request: {}, options=(OptionSpec("model", str),))


def test_a_target_option_taking_a_deploy_argument_is_an_error(monkeypatch, capsys):
    from onnxgate.plugins import manager

    plain = manager.Registry
    monkeypatch.setattr(manager, "Registry", lambda: plain(get_plugin_manager([_GreedyTarget()])))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["deploy", "m.onnx", "--target", "greedy"])
    assert exit_.value.code == 2
    assert (
        "deploy target 'greedy': option 'model' clashes with onnxgate deploy's own MODEL argument"
        in capsys.readouterr().err
    )


def test_a_third_party_converter_without_declared_options_still_gets_them_with_a_warning(monkeypatch):
    """API 1.2 made declaring options the rule; the versioning policy keeps the
    old form working, with a DeprecationWarning, for third-party converters."""
    from onnxgate.pipeline import api as api_mod
    from onnxgate.plugins import manager

    spec = Registry().converter("sklearn")
    bare = dataclasses.replace(spec, options=())
    monkeypatch.setitem(manager._PLUGIN_DISTS, "old-plugin", ("old-dist", "0.9"))
    with pytest.warns(DeprecationWarning, match="declares no options"):
        assert api_mod._converter_options(bare, {"speed": "fast"}, "old-plugin") == {"speed": "fast"}
    with pytest.raises(UsageError, match="has no option 'speed'"):  # onnxgate's own converters stay strict
        api_mod._converter_options(bare, {"speed": "fast"}, "sklearn")

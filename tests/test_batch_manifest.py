"""The batch manifest: TOML/JSON, defaults, globs, relative paths, and
hostile manifests refused before anything runs (exit 2, nothing unpickled,
nothing written). No model is converted here, so these tests are fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_support import evil_pickle

from onnxgate.pipeline.batch import load
from onnxgate.pipeline.cli import main
from onnxgate.plugins.errors import UsageError


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_toml_defaults_globs_and_paths_relative_to_the_manifest(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for rel in ("models/a/one.skops", "models/b/two.skops", "models/three.onnx", "samples/s.npz"):
        touch(root / rel)
    (root / "jobs").mkdir()
    manifest = root / "jobs" / "nightly.toml"
    manifest.write_text("""
[defaults]
timeout = 120
tags = ["nightly"]
sample = "../samples/s.npz"
accept_unverified = true

[[models]]
source = "../models/**/*.skops"

[[models]]
name = "three"
source = "../models/three.onnx"
timeout = 5
tags = ["onnx"]
[models.outputs.y]
rtol = 1e-3
elementwise = false
""")
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    entries = {e.name: e for e in load(manifest)}
    assert set(entries) == {"a-one", "b-two", "three"}  # glob entries are named after their path
    assert entries["a-one"].source == str(root / "jobs" / ".." / "models" / "a" / "one.skops")
    assert Path(entries["b-two"].sample).resolve() == (root / "samples" / "s.npz").resolve()
    assert entries["a-one"].timeout == 120 and entries["a-one"].tags == ("nightly",)
    assert entries["three"].timeout == 5 and entries["three"].tags == ("onnx",)  # the entry wins
    assert entries["three"].outputs == {"y": {"rtol": 1e-3, "elementwise": False}}
    assert all(e.accept_unverified is True for e in entries.values())


def test_json_manifest_still_accepted(tmp_path):
    touch(tmp_path / "m.onnx")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"models": [{"source": "m.onnx", "static_batch": True, "options": {}}]}))
    [entry] = load(manifest)
    assert entry.name == "m" and entry.static_batch is True and entry.source == str(tmp_path / "m.onnx")


def test_every_error_listed_with_entry_and_key(tmp_path, capsys):
    touch(tmp_path / "m.onnx")
    manifest = tmp_path / "bad.toml"
    manifest.write_text("""
[[models]]
name = "ok-name"
source = "m.onnx"
trust_source = "false"
accept_unverified = "no"
timeout = -1
tags = "a"
colour = "red"
opset = "13"

[[models]]
name = "../x"
source = "missing.skops"
options = "fast"

[[models]]
name = "chain"
source = "m.onnx"
framework = "chainer"
options = { model = 3, speed = "max" }
[models.outputs.y]
rtol = "1e-3"
topk = 2.5
""")
    code, out, err = cli(capsys, "batch", manifest, "--out", tmp_path / "out")
    assert code == 2, err
    assert "Traceback" not in err
    expected = [
        "models[0] (ok-name): key 'trust_source': expected a boolean (true/false), got string \"false\"",
        "models[0] (ok-name): key 'accept_unverified': expected a boolean (true/false), got string \"no\"",
        "models[0] (ok-name): key 'timeout': must be > 0",
        "models[0] (ok-name): key 'tags': expected an array of strings",
        "models[0] (ok-name): unknown key 'colour'",
        "models[0] (ok-name): key 'opset': expected an integer, got string",
        "models[1] (../x): key 'name': '../x' is not a safe file name",
        "models[1] (../x): key 'options': expected a table, got string",
        "models[1] (../x): key 'source':",  # no such file
        "models[2] (chain): key 'options': option 'model': expected a str, got integer",
        "models[2] (chain): key 'options': unknown option 'speed' for chainer",
        "models[2] (chain): key 'outputs': [outputs.y] rtol: expected a number, got string",
        "models[2] (chain): key 'outputs': [outputs.y] topk: expected an integer, got number",
    ]
    for line in expected:
        assert line in err, (line, err)
    assert f"{len(expected)} error(s)" in err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def _hostile(tmp_path, capsys, entry: dict, manifest_name: str = "m.json"):
    marker = tmp_path / "PWNED"
    pkl = evil_pickle(tmp_path, marker)
    manifest = tmp_path / manifest_name
    manifest.write_text(json.dumps({"models": [{"source": pkl.name, **entry}]}))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(capsys, "batch", manifest, "--out", tmp_path / "out", "--jobs", "2")
    assert code == 2, (out, err)
    assert err.startswith("onnxgate: error: manifest") and "Traceback" not in err
    assert not marker.exists(), "the pickle was loaded"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no --out, nothing beside it
    return err


def test_string_boolean_trust_source_unpickles_nothing(tmp_path, capsys):
    err = _hostile(tmp_path, capsys, {"trust_source": "false"})
    assert "key 'trust_source': expected a boolean" in err


def test_string_boolean_accept_unverified_refused(tmp_path, capsys):
    err = _hostile(tmp_path, capsys, {"accept_unverified": "no"})
    assert "key 'accept_unverified': expected a boolean" in err


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/tmp/onnxgate-escape", "sub/dir", ".hidden", "a..b"])
def test_names_cannot_leave_out(tmp_path, capsys, name):
    err = _hostile(tmp_path, capsys, {"name": name, "trust_source": True})
    assert "is not a safe file name" in err
    assert not Path("/tmp/onnxgate-escape.onnx").exists()


def test_ill_typed_options_refused(tmp_path, capsys):
    err = _hostile(tmp_path, capsys, {"options": {"params": ["a"]}, "framework": "mxnet", "seed": 1.5})
    assert "option 'params': expected a str, got array" in err
    assert "key 'seed': expected an integer, got number" in err


def test_duplicate_names_and_empty_globs(tmp_path, capsys):
    touch(tmp_path / "a.onnx")
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        '[[models]]\nsource = "a.onnx"\n[[models]]\nname = "A"\nsource = "a.onnx"\n'
        '[[models]]\nsource = "nothing/*.skops"\n'
    )
    code, _, err = cli(capsys, "batch", manifest, "--out", tmp_path / "out")
    assert code == 2
    assert "name 'a': used by 2 entries" in err and "matches nothing" in err


def test_unreadable_manifests(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text("[[models]\nsource=")
    assert cli(capsys, "batch", bad)[0] == 2
    assert cli(capsys, "batch", tmp_path / "none.toml")[0] == 2
    bad.write_text('models = "x"\n')
    code, _, err = cli(capsys, "batch", bad)
    assert code == 2 and "non-empty array" in err


def test_manifest_schema_agrees_with_the_loader(tmp_path):
    """pipeline/batch/manifest.schema.json, for editors and CI linting."""
    import jsonschema

    from onnxgate.pipeline.batch.manifest import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    touch(tmp_path / "m.onnx")
    good = {
        "defaults": {"timeout": 60, "tags": ["x"]},
        "models": [
            {
                "name": "m",
                "source": "m.onnx",
                "trust_source": False,
                "options": {"model": "a:b"},
                "outputs": {"y": {"rtol": 1e-3, "elementwise": False}},
            }
        ],
    }
    jsonschema.validate(good, schema)
    (tmp_path / "good.json").write_text(json.dumps(good))
    assert [e.name for e in load(tmp_path / "good.json")] == ["m"]
    for bad in (
        {"trust_source": "false"},
        {"accept_unverified": "no"},
        {"name": "../x"},
        {"name": "/abs"},
        {"options": "fast"},
        {"opset": "13"},
        {"colour": 1},
        {"outputs": {"y": {"rtol": "1e-3"}}},
    ):
        doc = {"models": [{"source": "m.onnx", **bad}]}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(UsageError):
            load(tmp_path / "bad.json")


def test_scheduling_keeps_a_framework_on_the_worker_that_imported_it():
    from onnxgate.pipeline.batch.runner import Job, pick

    jobs = [
        Job(entry=None, framework=fw, key=str(i), gate=None, timeout=1)
        for i, fw in enumerate(["sklearn", "sklearn", "torch", "tensorflow", "torch"])
    ]
    assert pick(jobs, last="torch", busy=["sklearn"]).key == "2"  # its own framework first
    assert pick(jobs, last=None, busy=["sklearn"]).key == "2"  # then one no other worker is on
    # every framework busy elsewhere: wait rather than import one again for two models...
    assert pick(jobs, last="xgboost", busy=["sklearn", "torch", "tensorflow"]) is None
    # ...but share a framework with many models left
    many = jobs + [Job(entry=None, framework="sklearn", key=f"s{i}", gate=None, timeout=1) for i in range(3)]
    assert pick(many, last="xgboost", busy=["sklearn", "torch", "tensorflow"]).key == "0"
    assert pick(jobs, last=None, busy=[]).key == "0"  # nothing else running: anything goes


def test_cache_key_of_a_module_source_imports_nothing(tmp_path, monkeypatch):
    """The key hashes the module's file; importing it (or its package) would
    run its code in the batch process itself, outside any worker."""
    from onnxgate.pipeline.batch import cache

    package = tmp_path / "crashpkg"
    package.mkdir()
    (package / "__init__.py").write_text("import os\nos._exit(7)\n")
    (package / "models.py").write_text("def build():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cache.module_file("crashpkg.models") == package / "models.py"
    assert cache.module_file("crashpkg") == package / "__init__.py"
    assert cache.module_file("no_such_module_here") is None
    assert cache._source_digest("crashpkg.models:build") == cache._file_digest(str(package / "models.py"))

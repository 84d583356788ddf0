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


def _jobs(*frameworks, estimate=1.0):
    from onnxgate.pipeline.batch.runner import Job

    return [
        Job(entry=None, framework=fw, key=str(i), gate=None, timeout=1, estimate=estimate)
        for i, fw in enumerate(frameworks)
    ]


def test_scheduling_keeps_a_framework_on_the_worker_that_imported_it():
    from onnxgate.pipeline.batch.schedule import pick

    jobs = _jobs("sklearn", "sklearn", "torch", "tensorflow", "torch")
    assert pick(jobs, warm={"torch"}, busy=["sklearn"]).key == "2"  # its own framework first
    # a fresh worker: the framework nobody is on with the most work (import + models): torch's two
    assert pick(jobs, warm=set(), busy=["sklearn"]).key == "2"
    assert pick(jobs[:4], warm=set(), busy=["sklearn"]).framework == "tensorflow"  # one torch model less
    # every framework busy elsewhere: wait rather than import one again for two models...
    assert pick(jobs, warm={"xgboost"}, busy=["sklearn", "torch", "tensorflow"]) is None
    # ...but share a framework with much work left
    many = jobs + _jobs(*["sklearn"] * 3)
    assert pick(many, warm={"xgboost"}, busy=["sklearn", "torch", "tensorflow"]).framework == "sklearn"
    assert pick([], warm=set(), busy=[]) is None


def test_scheduling_starts_the_longest_model_of_a_framework_first():
    from onnxgate.pipeline.batch.schedule import pick

    jobs = _jobs("torch", "torch", "torch")
    jobs[1].estimate = 30.0  # an earlier run timed it
    assert pick(jobs, warm={"torch"}, busy=[]).key == "1"


def test_a_replaced_worker_has_nothing_imported():
    from onnxgate.pipeline.batch.schedule import Worker

    worker = Worker()
    worker.started("torch")
    worker.finished(replaced=False, max_models=0)
    assert worker.warm == {"torch"}
    worker.finished(replaced=True, max_models=0)  # crashed, timed out or passed the memory cap
    assert worker.warm == set()
    worker.started("sklearn")
    worker.finished(replaced=False, max_models=2)
    assert worker.warm == {"sklearn"}
    worker.finished(replaced=False, max_models=2)  # --max-models-per-worker 2: a new process
    assert worker.warm == set()


def _makespan(jobs, slots: int, imports: dict[str, float]) -> float:
    """Simulate the runner's loop: each slot runs one model at a time and pays
    a framework's import the first time it meets it."""
    from onnxgate.pipeline.batch.schedule import Worker, pick

    pending, workers = list(jobs), [Worker() for _ in range(slots)]
    free_at, running = [0.0] * slots, [None] * slots
    now = 0.0
    while pending or any(running):
        for slot in range(slots):
            if running[slot] is None and pending and free_at[slot] <= now:
                busy = [job.framework for s, job in enumerate(running) if job is not None and s != slot]
                job = pick(pending, workers[slot].warm, busy)
                if job is None:
                    continue
                pending.remove(job)
                cost = job.estimate + (0 if job.framework in workers[slot].warm else imports[job.framework])
                workers[slot].started(job.framework)
                running[slot], free_at[slot] = job, now + cost
        busy_slots = [s for s in range(slots) if running[s] is not None]
        now = min(free_at[s] for s in busy_slots)
        for s in busy_slots:
            if free_at[s] <= now:
                running[s] = None
    return now


def test_two_workers_split_a_mixed_fleet_close_to_evenly():
    """The bench's shape (many small scikit-learn models, few slow-to-import
    deep-learning ones; the manifest lists scikit-learn first): with the real
    import table, two workers finish in little more than half the time of one."""
    from onnxgate.pipeline.batch.schedule import IMPORT_SECONDS

    fleet = _jobs(*["sklearn"] * 30, estimate=0.1)
    for fw, n, seconds in (
        ("xgboost", 2, 0.3),
        ("lightgbm", 2, 0.2),
        ("catboost", 2, 0.2),
        ("torch", 2, 0.5),
        ("tensorflow", 4, 0.5),
    ):
        fleet += _jobs(*[fw] * n, estimate=seconds)
    one = _makespan(fleet, 1, IMPORT_SECONDS)
    two = _makespan(fleet, 2, IMPORT_SECONDS)
    assert two <= 0.56 * one, (one, two)


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


def test_an_earlier_runs_time_is_the_schedulers_estimate(tmp_path):
    from onnxgate.pipeline.batch import cache

    assert cache.previous_seconds(tmp_path, "m") is None  # never ran
    cache.store(tmp_path, {"name": "m", "seconds": 12.5}, "key-of-another-version")
    assert cache.previous_seconds(tmp_path, "m") == 12.5  # whatever its key
    cache.record_path(tmp_path, "m").write_text('{"row": {"seconds": "soon"}}')
    assert cache.previous_seconds(tmp_path, "m") is None

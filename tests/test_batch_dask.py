"""The batch on a real Dask cluster (``distributed.LocalCluster``, worker
processes on 127.0.0.1): same verdicts as the local executor for good
models, a gate failure, a crash, a segfault, a hang and a memory hog; the
same cache."""

from __future__ import annotations

import json

import pytest
from batch_support import models, toml_entry

pytest.importorskip("skops")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Models and badmodels.py, importable by every worker (PYTHONPATH), as on a real cluster."""
    path = tmp_path_factory.mktemp("dask-models")
    models(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(path))
        mp.syspath_prepend(str(path))
        yield path


@pytest.fixture(scope="module")
def cluster(folder):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local


def test_dask_gives_the_local_verdicts(cluster, folder, tmp_path):
    import time

    from onnxgate.pipeline import batch

    built = {n: {k: str(folder / v) for k, v in e.items()} for n, e in models(folder).items()}
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        toml_entry(name="logreg", **built["logreg"])
        + toml_entry(name="ridge-strict", **built["ridge"])
        + "[models.outputs.variable]\natol = 0\nrtol = 0\n"
        + toml_entry(name="exits", source="badmodels:exits")
        + toml_entry(name="segfaults", source="badmodels:segfaults")
        + toml_entry(name="hangs", source="badmodels:hangs", timeout=3)
        + toml_entry(name="hog", source="badmodels:eats_memory")
    )
    common = {"latency": False, "max_memory": 1 << 30}
    started = time.perf_counter()
    local = {
        r["name"]: (r["verdict"], r["exit_code"]) for r in batch.run(manifest, tmp_path / "local", jobs=2, **common)
    }
    assert local == {
        "logreg": ("passed", 0),
        "ridge-strict": ("failed", 1),
        "exits": ("crashed", 3),
        "segfaults": ("crashed", 3),
        "hangs": ("timeout", 3),
        "hog": ("out-of-memory", 3),
    }
    print(f"local: {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    rows = batch.run(manifest, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address, **common)
    print(f"dask: {time.perf_counter() - started:.1f}s")
    assert {r["name"]: (r["verdict"], r["exit_code"]) for r in rows} == local
    assert batch.exit_code(rows) == 3
    # the Dask workers survived their models' crashes and hang
    assert len(cluster.scheduler_info["workers"]) == 2
    again = batch.run(manifest, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address, **common)
    assert all(r["cached"] for r in again)
    assert (tmp_path / "dask" / "index.html").is_file() and (tmp_path / "dask" / "logreg.onnx").is_file()


def test_dask_local_cluster_from_the_cli_shipping_bytes(tmp_path):
    """--dask-workers starts the cluster; --ship sends the model files as bytes
    and brings the outputs back (workers need no view of --out)."""
    from batch_support import env_with_path

    from onnxgate.plugins.testing import run_cli

    built = models(tmp_path)
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        toml_entry(name="logreg", **built["logreg"]) + toml_entry(name="exits", source="badmodels:exits")
    )
    proc = run_cli(
        "batch",
        str(manifest),
        "--out",
        str(tmp_path / "out"),
        "--executor",
        "dask",
        "--dask-workers",
        "2",
        "--ship",
        "--no-latency",
        env=env_with_path(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "crashed" in proc.stdout and "passed" in proc.stdout
    import onnx

    out = tmp_path / "out"
    onnx.checker.check_model(onnx.load(str(out / "logreg.onnx")))
    assert json.loads((out / "logreg.report.json").read_text())["verdict"] == "passed"
    assert (out / "logreg.html").is_file() and (out / "logreg.onnx.onnxgate.json").is_file()


def test_dask_usage_errors(tmp_path, monkeypatch):
    from onnxgate.pipeline import batch
    from onnxgate.pipeline.batch import dask_executor
    from onnxgate.plugins.errors import UsageError
    from onnxgate.plugins.testing import assert_clean_error, run_cli

    (tmp_path / "m.onnx").write_bytes(b"x")
    manifest = tmp_path / "m.toml"
    manifest.write_text(toml_entry(source="m.onnx"))
    assert_clean_error(run_cli("batch", str(manifest), "--executor", "dask"))
    assert_clean_error(run_cli("batch", str(manifest), "--dask-workers", "2"))
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(UsageError, match="cannot connect"):
        batch.run(manifest, tmp_path / "o", executor="dask", scheduler="tcp://127.0.0.1:9")


def test_the_local_cluster_onnxgate_starts_has_quiet_workers():
    """--dask-workers N: worker threads of this process (each model still runs
    in a supervised child), with Dask's profiler, fast memory polling and
    work stealing off (they only take CPU from the conversions)."""
    from onnxgate.pipeline.batch.dask_executor import DaskExecutor

    def callbacks(dask_worker):
        return {name: getattr(cb, "callback_time", None) for name, cb in dask_worker.periodic_callbacks.items()}

    executor = DaskExecutor(None, 2)
    try:
        assert executor.slots == 2 and all(a.startswith("inproc://") for a in executor._slots)
        for found in executor.client.run(callbacks).values():
            assert "profile" not in found and found["memory_monitor"] == 1000
        assert "stealing" not in executor.client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.extensions)
        )
    finally:
        executor.close()

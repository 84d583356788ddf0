"""Isolated Python environments for converters that cannot live in the main one.

A plugin declares an environment (``onnxgate_environments`` hook ->
``EnvironmentSpec``) and names it in ``ConverterSpec.environment``. onnxgate
then:

- creates it on request (``onnxgate env create NAME``): a venv built (by
  ``envs.venv``, the builder the serving environment uses too) in a
  temporary folder beside its final place and renamed into place only once
  every install step succeeded, with a marker file holding the spec's hash,
  so re-running is a no-op and an interrupted create leaves nothing behind;
- finds it later under ``$ONNXGATE_HOME/envs/NAME`` (default
  ``${XDG_DATA_HOME:-~/.local/share}/onnxgate/envs/NAME``);
- runs stage 1 (load, convert, run the original model) there, through
  ``env_worker.py`` started by path with the environment's interpreter. They
  talk through files: a request JSON in, an artifact folder (model.onnx +
  cases.npz + artifact.json) or an error JSON out. Validation and everything
  after it stay in the main environment.

This module imports nothing heavy: ``onnxgate plugins`` and ``onnxgate env``
use it, and the worker uses its artifact (de)serialisation with the
environment's own numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate.pipeline.envs import venv
from onnxgate.pipeline.envs.venv import MARKER, dist_key, last_line, lock, python_of, read_marker
from onnxgate.plugins.errors import ConversionError, UntrustedSourceError, UsageError
from onnxgate.plugins.manager import Registry
from onnxgate.plugins.spec import ConvertOptions, Tolerance

#: Overrides where onnxgate keeps its data (environments under ``envs/``).
HOME_ENV = "ONNXGATE_HOME"
#: What the worker itself needs besides the plugin's own steps: onnxgate's
#: plugin contract (``onnxgate.plugins``) imports pluggy.
WORKER_REQUIREMENTS = ("pluggy>=1.3,<2",)
#: Bump when the layout or the worker's needs change: existing envs go stale.
LAYOUT_VERSION = 1
WORKER = Path(__file__).with_name("worker.py")


# -- where environments live -------------------------------------------------
def home() -> Path:
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "onnxgate"


def envs_dir() -> Path:
    return home() / "envs"


def env_path(name: str) -> Path:
    return envs_dir() / name


def spec_hash(spec) -> str:
    """What makes two environments the same: their install recipe."""
    recipe = {
        "layout": LAYOUT_VERSION,
        "python": spec.python,
        "constraints": list(getattr(spec, "constraints", ())),
        "steps": [list(step) for step in _steps(spec)],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _steps(spec) -> list[tuple]:
    return [tuple(step) for step in spec.install_steps] + [WORKER_REQUIREMENTS]


# -- status --------------------------------------------------------------------
@dataclass
class Status:
    name: str
    path: Path
    state: str  # "ready", "missing" or "stale"
    detail: str = ""
    #: distribution -> version installed there (recorded at creation)
    packages: dict[str, str] | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def hint(self) -> str:
        verb = "does not exist" if self.state == "missing" else f"is out of date ({self.detail})"
        return f"environment {self.name!r} {verb}; create it with: onnxgate env create {self.name}"


def status(spec) -> Status:
    """Cheap: reads the marker file, imports nothing."""
    path = env_path(spec.name)
    if not (path / MARKER).is_file() or not python_of(path).exists():
        return Status(spec.name, path, "missing")
    recorded = read_marker(path)
    if recorded is None:
        return Status(spec.name, path, "stale", "unreadable marker")
    if recorded.get("hash") != spec_hash(spec):
        return Status(spec.name, path, "stale", "its recipe changed")
    return Status(spec.name, path, "ready", recorded.get("python_version", ""), recorded.get("packages"))


def converter_status(registry, converter):
    """(missing, framework version) of a converter that runs in an environment."""
    try:
        spec = registry.environment(converter.environment)
    except KeyError:
        return [f"environment {converter.environment!r} (no plugin declares it)"], ""
    st = status(spec)
    if not st.ready:
        return [f"environment {spec.name!r} ({st.state}; run: onnxgate env create {spec.name})"], ""
    packages = st.packages or {}
    missing = [r for r in converter.requires if dist_key(r) not in packages]
    return missing, packages.get(dist_key(converter.framework_distribution or ""), "")


def require(spec):
    """The environment's status, or a UsageError naming the command to run."""
    st = status(spec)
    if not st.ready:
        raise UsageError(st.hint())
    return st


# -- creation --------------------------------------------------------------------
def create(spec, force: bool = False, log=None) -> Status:
    """Build the environment unless an identical one exists (idempotent).

    ``log(line)`` receives progress lines. pip's own output goes to a log
    file under ``envs/.logs`` whose last lines end up in the error on failure.
    """
    log = log or (lambda line: None)
    current = status(spec)
    if current.ready and not force:
        log(f"environment {spec.name!r} is ready at {current.path} (nothing to do)")
        return current
    python = _base_python(spec.python)
    root = envs_dir()
    root.mkdir(parents=True, exist_ok=True)
    with lock(root / f".{spec.name}.lock"):
        current = status(spec)  # someone else may have built it while we waited
        if current.ready and not force:
            log(f"environment {spec.name!r} is ready at {current.path} (nothing to do)")
            return current
        for leftover in root.glob(f".{spec.name}.build-*"):  # a create killed outright
            shutil.rmtree(leftover, ignore_errors=True)
        build = Path(tempfile.mkdtemp(prefix=f".{spec.name}.build-", dir=root))
        started = time.perf_counter()
        try:
            venv.build(
                build,
                python,
                _steps(spec),
                log_path=root / ".logs" / f"{spec.name}.log",
                marker={"name": spec.name, "hash": spec_hash(spec)},
                constraints=getattr(spec, "constraints", ()),
                log=log,
            )
            _install(build, current.path)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        log(f"environment {spec.name!r} created at {current.path} in {time.perf_counter() - started:.0f} s")
    final = status(spec)
    if not final.ready:  # only a bug gets here
        raise UsageError(f"environment {spec.name!r}: created but not usable ({final.state})")
    return final


def _base_python(python: str) -> str:
    found = python if os.path.isabs(python) and os.path.exists(python) else shutil.which(python)
    if not found:
        raise UsageError(f"environment needs the interpreter {python!r}, which is not on PATH")
    return found


def _install(build: Path, final: Path) -> None:
    """Rename the finished build into place; an older env is moved aside first."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(build, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove(spec) -> bool:
    path = env_path(spec.name)
    if not path.exists():
        return False
    trash = path.with_name(f".{path.name}.removing-{os.getpid()}")
    os.replace(path, trash)  # atomic: the env is gone at once, deletion can take its time
    shutil.rmtree(trash, ignore_errors=True)
    return True


# -- running stage 1 there -------------------------------------------------------
def produce(
    spec, source, *, sample=None, options=None, trusted=False, seed=0, plugin="", registry=None, **files_and_gate
):
    """Stage 1 of ``spec`` in its environment; returns the main side's Artifact.

    ``files_and_gate``: the rest of ``stage_convert.produce``'s keywords
    (``expected``/``golden`` paths, ``gate``), forwarded when set.
    """

    registry = registry or Registry()
    options = options or ConvertOptions()
    try:
        env_spec = registry.environment(spec.environment)
    except KeyError as exc:
        raise UsageError(f"converter {spec.name!r} needs {exc.args[0]}") from None
    st = require(env_spec)
    given = getattr(spec.convert, "onnxgate_given_model", None)
    module = _plugin_module(registry, spec, plugin)
    with tempfile.TemporaryDirectory(prefix="onnxgate-env-") as tmp:
        work = Path(tmp)
        sample, files_and_gate = _spill_in_memory(sample, files_and_gate, work)
        request = {
            "converter": spec.name,
            "plugin_module": module,
            "mounts": _mounts(module),
            "source_path": str(Path(source.path).resolve()) if source.path is not None else None,
            "source_reference": source.reference or None,
            "sample": str(Path(sample).resolve()) if sample is not None else None,
            "options": {"opset": options.opset, "dynamic_batch": options.dynamic_batch, "extra": dict(options.extra)},
            "trusted": bool(trusted),
            "seed": int(seed),
            "plugin": plugin,
            "cwd": os.getcwd(),
            "given_model": None,
            "error_file": str(work / "error.json"),
            "forward": _forward(files_and_gate),
        }
        if given is not None:
            (work / "given.onnx").write_bytes(given.SerializeToString())
            request["given_model"] = str(work / "given.onnx")
        try:
            text = json.dumps(request)
        except TypeError as exc:
            raise UsageError(
                f"converter {spec.name!r} runs in environment {env_spec.name!r}: "
                f"its options must be plain values (str, number, list, dict): {exc}"
            ) from None
        (work / "request.json").write_text(text, encoding="utf-8")
        out = work / "out"
        cmd = [str(python_of(st.path)), "-I", str(WORKER), str(work / "request.json"), str(out)]
        with open(work / "worker.log", "wb") as log_fh:
            proc = subprocess.run(
                cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_worker_env()
            )
        error_file = work / "error.json"
        if error_file.is_file():
            err = json.loads(error_file.read_text(encoding="utf-8"))
            cls = {
                "UsageError": UsageError,
                "UntrustedSourceError": UntrustedSourceError,
                "ConversionError": ConversionError,
            }.get(err.get("type"), ConversionError)
            raise cls(err.get("message", "failed"))
        if proc.returncode != 0 or not (out / "artifact.json").is_file():
            raise ConversionError(
                f"{spec.name}: the worker in environment {env_spec.name!r} failed (exit {proc.returncode}): "
                f"{last_line(work / 'worker.log')}"
            )
        artifact = read_artifact(out)
    if given is not None:
        artifact.model = given  # validate the caller's model byte for byte
    return artifact


def _spill_in_memory(sample, files_and_gate, work: Path):
    """Data given in memory (Python API) crosses to the worker as files."""
    from onnxgate.pipeline.conversion import samples
    from onnxgate.plugins.errors import UsageError

    if sample is not None and not samples.is_path(sample):
        sample = samples.to_file(sample, work, "sample")
    expected = files_and_gate.get("expected")
    if expected is not None and not samples.is_path(expected):
        if not isinstance(expected, dict):
            raise UsageError("expected: for a converter in another environment give a dict keyed by output name")
        files_and_gate = {**files_and_gate, "expected": samples.to_file(expected, work, "expected")}
    return sample, files_and_gate


def _forward(kwargs) -> dict[str, Any]:
    """Paths as absolute strings; a gate config as its plain (JSON) fields."""
    import dataclasses

    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, Path):
            out[key] = {"path": str(value.resolve())}
        elif dataclasses.is_dataclass(value):
            plain = {
                f.name: getattr(value, f.name)
                for f in dataclasses.fields(value)
                if isinstance(getattr(value, f.name), (bool, int, float, str, type(None)))
            }
            out[key] = {"dataclass": f"{type(value).__module__}:{type(value).__qualname__}", "fields": plain}
        else:
            out[key] = {"value": value}
    return out


def _plugin_module(registry, spec, plugin: str) -> str:
    """The plugin module the worker imports to call its hook and find the spec again:
    the registered plugin, else the module of the spec's callables that has the hook."""
    candidates = []
    if plugin:
        candidates.append(registry.pm.get_plugin(plugin))
    for fn in (spec.run, spec.load, spec.convert):
        candidates.append(sys.modules.get(getattr(fn, "__module__", None) or ""))
    for module in candidates:
        name = getattr(module, "__name__", None)
        if isinstance(name, str) and sys.modules.get(name) is module and hasattr(module, "onnxgate_converters"):
            return name

    raise UsageError(
        f"converter {spec.name!r}: its plugin is not an importable module, so it cannot run in another environment"
    )


def _mounts(module_name: str) -> dict[str, str]:
    """Package name -> folder, for the worker to import the same code by path.

    onnxgate's packages are mapped from top-level folders (setup.cfg
    ``package_dir``), so each is mounted on its own; a third-party plugin's
    top-level package is mounted whole.
    """
    import importlib

    mounts = {}
    for name in ("onnxgate.plugins", "onnxgate.pipeline", "onnxgate.converters"):
        init = importlib.import_module(name).__file__
        assert init is not None  # regular packages (an __init__.py each), never namespace ones
        mounts[name] = str(Path(init).parent)
    top = module_name.split(".")[0]
    if top != "onnxgate":
        module = importlib.import_module(top)
        where = getattr(module, "__file__", None)
        if where:
            mounts[top] = str(Path(where).parent) if Path(where).name == "__init__.py" else where
    return mounts


def _worker_env() -> dict[str, str]:
    """The worker runs isolated (-I); frameworks still write into HOME."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


# -- the artifact as files ---------------------------------------------------------
def write_artifact(artifact, folder: Path) -> None:
    """model.onnx + cases.npz (inputs and expected outputs) + artifact.json.

    Only numeric arrays travel: the npz is read back with allow_pickle=False.
    Every other Artifact field goes into the JSON as it is.
    """
    import dataclasses

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(artifact.model.SerializeToString())
    arrays: dict[str, Any] = {}
    cases = []
    for i, case in enumerate(artifact.cases):
        entry = {"name": case.name, "meta": case.meta, "inputs": list(case.inputs), "expected": None}
        for name, value in case.inputs.items():
            arrays[f"{i}/in/{name}"] = np.asarray(value)
        if case.expected is not None:
            entry["expected"] = list(case.expected)
            for name, value in case.expected.items():
                value = np.asarray(value)
                if value.dtype.kind == "O":
                    raise TypeError(f"output {name!r} is not a numeric array; it cannot leave the environment")
                arrays[f"{i}/out/{name}"] = value
        cases.append(entry)
    with open(folder / "cases.npz", "wb") as fh:
        np.savez(fh, **arrays)
    meta = {
        f.name: getattr(artifact, f.name)
        for f in dataclasses.fields(artifact)
        if f.name not in ("model", "cases", "tolerance")
    }
    meta["tolerance"] = {"rtol": artifact.tolerance.rtol, "atol": artifact.tolerance.atol}
    meta["cases"] = cases
    (folder / "artifact.json").write_text(json.dumps(_encode(meta), indent=1), encoding="utf-8")


def _encode(value):
    """JSON that keeps what JSON would lose: non-string dict keys (latency by
    batch size), tuples; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {_hashable(_decode(k)): _decode(v) for k, v in value["__items__"]}
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def read_artifact(folder: Path):
    import dataclasses

    import numpy as np
    import onnx

    from onnxgate.pipeline.core.artifact import Artifact, Case

    meta = _decode(json.loads((folder / "artifact.json").read_text(encoding="utf-8")))
    cases = []
    with np.load(folder / "cases.npz", allow_pickle=False) as data:
        for i, entry in enumerate(meta.pop("cases")):
            expected = entry["expected"]
            cases.append(
                Case(
                    name=entry["name"],
                    inputs={n: data[f"{i}/in/{n}"] for n in entry["inputs"]},
                    expected=None if expected is None else {n: data[f"{i}/out/{n}"] for n in expected},
                    meta=entry.get("meta") or {},
                )
            )
    known = {f.name for f in dataclasses.fields(Artifact)}
    fields = {k: v for k, v in meta.items() if k in known}  # an older worker's extra keys are dropped
    fields["tolerance"] = Tolerance(**meta["tolerance"])
    return Artifact(model=onnx.load(str(folder / "model.onnx")), cases=cases, **fields)

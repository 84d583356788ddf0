"""Stage 1 inside a converter's own environment (see environments.py).

Started by path with that environment's interpreter, isolated (``python -I``):

    ENV/bin/python -I env_worker.py REQUEST.json OUT_DIR

It must import nothing from the main environment's stack. It mounts the
same onnxgate packages the main process runs (by folder, from the request),
imports the converter's plugin module, asks its ``onnxgate_converters``
hook for the spec (through a plugin manager holding that module alone) and
runs the ordinary stage 1 (``stage_convert.produce``) here, with this
environment's numpy, onnx and framework. The Artifact is written to OUT_DIR; a failure is written to the
request's ``error_file`` as ``{"type", "message"}`` so the main process can
re-raise it with the same exit code.

Loaders of environment converters may take a third argument, the
``ConvertOptions``, since their sources can need more than one file.
"""

import importlib
import importlib.util
import inspect
import json
import sys
import traceback
import types
from pathlib import Path


def mount(name, folder):
    """Make package ``name`` importable from ``folder`` (parents as namespaces)."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent not in sys.modules:
            module = types.ModuleType(parent)
            module.__path__ = []
            sys.modules[parent] = module
    folder = Path(folder)
    if folder.is_file():  # a single-module plugin
        spec = importlib.util.spec_from_file_location(name, folder)
    else:
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if len(parts) > 1:
        setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)


def find_spec(module_name, converter):
    """The converter's spec, asked through a small plugin manager of its own
    (only the plugin's module: the environment lacks the other frameworks)."""
    import pluggy

    from onnxgate.plugins import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(importlib.import_module(module_name), name=module_name)
    for result in pm.hook.onnxgate_converters():
        for spec in result or ():
            if spec.name == converter:
                return spec
    raise LookupError(f"plugin module {module_name!r} no longer declares converter {converter!r}")


def with_options(load, options):
    """Pass the options to loaders that accept them."""
    if load is None:
        return None
    try:
        takes = len(inspect.signature(load).parameters) >= 3
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return load
    return lambda path, trusted: load(path, trusted, options)


def given_model_convert(path):
    def convert(model, example, options):
        import onnx

        from onnxgate.plugins.spec import Conversion

        return Conversion(onnx.load(path), exporter="given")

    return convert


def main(request_path, out_dir):
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    error_file = Path(request["error_file"])
    try:
        for name, folder in request["mounts"].items():
            mount(name, folder)
        if request.get("cwd"):
            sys.path.insert(0, request["cwd"])  # like `python -m`: user modules by reference
        return run(request, Path(out_dir))
    except BaseException as exc:  # every failure goes back as one line
        from_onnxgate = type(exc).__module__.startswith("onnxgate.")
        kind = type(exc).__name__ if from_onnxgate else "ConversionError"
        message = str(exc) if from_onnxgate else _internal(request, exc)
        error_file.write_text(json.dumps({"type": kind, "message": message}), encoding="utf-8")
        traceback.print_exc()
        return 1


def _internal(request, exc):
    lines = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"{request.get('converter')}: failed in its environment: {first}"


def run(request, out_dir):
    from dataclasses import replace

    from onnxgate.pipeline.conversion import stage as stage_convert
    from onnxgate.pipeline.conversion.sources import Source
    from onnxgate.pipeline.envs import isolated as environments
    from onnxgate.plugins.spec import ConvertOptions

    opts = request["options"]
    options = ConvertOptions(opset=opts["opset"], dynamic_batch=opts["dynamic_batch"], extra=opts["extra"])
    spec = find_spec(request["plugin_module"], request["converter"])
    spec = replace(spec, environment=None, load=with_options(spec.load, options))
    if request.get("given_model"):
        spec = replace(spec, convert=given_model_convert(request["given_model"]))
    if request.get("source_path"):
        source = Source(path=Path(request["source_path"]))
    else:
        from onnxgate.pipeline.conversion.sources import resolve

        source = resolve(request["source_reference"])
    artifact = stage_convert.produce(
        spec,
        source,
        sample=Path(request["sample"]) if request.get("sample") else None,
        options=options,
        trusted=request["trusted"],
        seed=request["seed"],
        plugin=request["plugin"],
        **{key: unpack(value) for key, value in request.get("forward", {}).items()},
    )
    artifact.versions.update(_versions())
    environments.write_artifact(artifact, out_dir)
    return 0


def unpack(value):
    """Inverse of environments._forward: a dataclass gets its plain fields back,
    the others keep their defaults (stage 1 reads only plain switches)."""
    if "path" in value:
        return Path(value["path"])
    if "dataclass" in value:
        module, _, qualname = value["dataclass"].partition(":")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        return cls(**value["fields"])
    return value["value"]


def _versions():
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for dist in ("numpy", "onnx"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {f"environment:{k}": v for k, v in found.items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

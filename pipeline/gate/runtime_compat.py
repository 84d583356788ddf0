"""Which onnxruntime releases can load a model: IR version and opsets.

The table is ONNX Runtime's published compatibility matrix
(https://onnxruntime.ai/docs/reference/compatibility.html, "ONNX opset
support"; source: microsoft/onnxruntime docs/reference/compatibility.md,
rows 0.1 to 1.20). Each row: the newest ai.onnx opset, ai.onnx.ml opset and
IR version that release implements. Releases newer than the table are not
guessed: the installed onnxruntime is probed instead (tiny models at
increasing versions, ~30 ms, cached), and any other unknown target is
reported as unknown rather than passed or failed.
"""

from __future__ import annotations

import functools
from typing import Any

from onnxgate.plugins.errors import UsageError

#: release -> (ai.onnx opset, ai.onnx.ml opset, IR version)
ORT_TABLE: dict[str, tuple[int, int, int]] = {
    "1.20": (21, 4, 10),
    "1.19": (21, 4, 10),
    "1.18": (21, 4, 10),
    "1.17": (20, 4, 9),
    "1.16": (19, 3, 9),
    "1.15": (19, 3, 8),
    "1.14": (18, 3, 8),
    "1.13": (17, 3, 8),
    "1.12": (17, 3, 8),
    "1.11": (16, 2, 8),
    "1.10": (15, 2, 8),
    "1.9": (15, 2, 8),
    "1.8": (14, 2, 7),
    "1.7": (13, 2, 7),
    "1.6": (13, 2, 7),
    "1.5": (12, 2, 7),
    "1.4": (12, 2, 7),
    "1.3": (12, 2, 7),
    "1.2": (11, 2, 6),
    "1.1": (11, 2, 6),
    "1.0": (11, 2, 6),
    "0.5": (10, 1, 5),
    "0.4": (10, 1, 5),
    "0.3": (9, 1, 3),
    "0.2": (8, 1, 3),
    "0.1": (8, 1, 3),
}
#: Domains onnxruntime implements beyond the table (contrib ops): not checked.
UNCHECKED_DOMAINS = ("com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental", "ai.onnx.contrib")


def minor(version: str) -> str:
    parts = str(version).strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"not a version: {version!r}")
    return f"{int(parts[0])}.{int(parts[1])}"


def _key(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


@functools.cache
def probe_installed() -> tuple[str, tuple[int, int, int]]:
    """(installed onnxruntime minor version, its limits), measured by loading tiny models."""
    import onnxruntime as ort

    def loads(ir: int, domain: str, opset: int) -> bool:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        imports = [helper.make_opsetid("", opset if domain == "" else 13)]
        if domain:
            imports.append(helper.make_opsetid(domain, opset))
        model = helper.make_model(graph, opset_imports=imports)
        model.ir_version = ir
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    def highest(check, start: int, stop: int) -> int:
        best = start
        for value in range(start, stop):
            if not check(value):
                break
            best = value
        return best

    ir = highest(lambda v: loads(v, "", 13), 7, 40)
    opset = highest(lambda v: loads(8, "", v), 13, 60)
    ml = highest(lambda v: loads(8, "ai.onnx.ml", v), 1, 20)
    return minor(ort.__version__), (opset, ml, ir)


def limits(target: str) -> tuple[int, int, int] | None:
    installed, measured = probe_installed()
    if target == installed:
        return measured
    return ORT_TABLE.get(target)


def model_needs(model) -> dict[str, Any]:
    opsets = {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import}
    return {"ir_version": int(model.ir_version), "opsets": opsets}


def _fits(needs: dict[str, Any], lim: tuple[int, int, int]) -> list[str]:
    opset, ml, ir = lim
    problems = []
    if needs["ir_version"] > ir:
        problems.append(f"IR version {needs['ir_version']} > {ir}")
    for domain, version in needs["opsets"].items():
        if domain == "ai.onnx" and version > opset:
            problems.append(f"ai.onnx opset {version} > {opset}")
        elif domain == "ai.onnx.ml" and version > ml:
            problems.append(f"ai.onnx.ml opset {version} > {ml}")
    return problems


def check(model, target: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report's ``runtime_compat`` section, the ``runtime_compat`` check)."""
    installed, _ = probe_installed()
    try:
        target_minor = minor(target) if target else installed
    except ValueError:
        raise UsageError(f"--target-runtime {target!r}: expected an onnxruntime version like 1.17") from None
    needs = model_needs(model)
    releases = dict(ORT_TABLE)
    measured = limits(installed)
    assert measured is not None  # the installed release's limits are measured, never unknown
    releases[installed] = measured
    loadable = sorted((r for r, lim in releases.items() if not _fits(needs, lim)), key=_key)
    other = sorted(d for d in needs["opsets"] if d not in ("ai.onnx", "ai.onnx.ml"))
    section: dict[str, Any] = {
        "target": target_minor,
        "installed": installed,
        **needs,
        "loadable_by": loadable,
        "oldest_release": loadable[0] if loadable else None,
        "unchecked_domains": other,
        "loadable_summary": _span(loadable),
        "source": "onnxruntime.ai/docs/reference/compatibility.html (<= 1.20) + probe of the installed onnxruntime",
    }
    lim = limits(target_minor)
    if lim is None:
        message = (
            f"no compatibility data for onnxruntime {target_minor} (known: {min(ORT_TABLE, key=_key)}-"
            f"{max(ORT_TABLE, key=_key)} and the installed {installed}); loadable by: {_span(loadable)}"
        )
        section["target_status"] = "unknown"
        return section, {"name": "runtime_compat", "passed": True, "message": message}
    problems = _fits(needs, lim)
    section["target_status"] = "ok" if not problems else "too new"
    section["target_limits"] = {"ai.onnx": lim[0], "ai.onnx.ml": lim[1], "ir_version": lim[2]}
    if problems:
        message = (
            f"onnxruntime {target_minor} cannot load this model: {', '.join(problems)}; "
            f"loadable by: {_span(loadable)} (re-export with a lower opset, e.g. --opset {lim[0]})"
        )
    else:
        message = f"onnxruntime {target_minor} can load this model; loadable by: {_span(loadable)}"
    return section, {"name": "runtime_compat", "passed": not problems, "message": message}


def _span(releases: list[str]) -> str:
    if not releases:
        return "no known onnxruntime release"
    if releases[0] not in ORT_TABLE:
        return (
            f"onnxruntime {releases[0]} (the installed release; releases after "
            f"{max(ORT_TABLE, key=_key)} and before it are not in the table)"
        )
    return f"onnxruntime {releases[0]} and later" if len(releases) > 1 else f"onnxruntime {releases[0]}"

"""``onnxgate inspect MODEL.onnx``: what a model is and where it came from."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show an ONNX model's inputs, outputs, opsets and provenance")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def describe(path: Path) -> dict:
    from onnxgate.pipeline.api import load_onnx
    from onnxgate.pipeline.conversion import provenance
    from onnxgate.pipeline.core.digest import sha256_path
    from onnxgate.pipeline.report.build import onnx_info
    from onnxgate.pipeline.report.model import plain

    model = load_onnx(path)
    info = plain(onnx_info(model, str(path), sha256_path(path)))
    info.update(
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        metadata={p.key: p.value for p in model.metadata_props if not p.key.startswith(provenance.PREFIX)},
        provenance=provenance.read(model),
        nodes=len(model.graph.node),
    )
    return info


def run(args) -> int:
    from onnxgate.pipeline.core.text import terminal

    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    # names, producer and provenance come from the file: no escapes or line breaks reach the terminal
    print(
        terminal(
            f"{info['path']}  sha256 {info['sha256'][:16]}…  IR {info['ir_version']}  "
            f"producer {info['producer'] or '?'}"
        )
    )
    print(terminal("opsets:  " + ", ".join(f"{d} {v}" for d, v in info["opsets"].items())))
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for v in info[kind]:
            print("  " + terminal(f"{v['name']}: {v['dtype']} {v['shape']}"))
    if info["provenance"]:
        print("provenance:")
        for k, v in info["provenance"].items():
            print("  " + terminal(f"{k}: {v}"))
    return 0

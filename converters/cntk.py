"""CNTK: recognised, and refused with an explanation.

CNTK's last release (2.7, 2019) has wheels only for Python <= 3.6, so no
interpreter onnxgate runs on can load a CNTK model. CNTK itself exports ONNX
(``model.save(path, format=C.ModelFormat.ONNX)``); that file goes through
onnxgate's ready-made ONNX path.

Recognition, without CNTK: the suffixes CNTK documents for models (``.dnn``,
``.cmf``) and ``.cntk``; a ``.model`` file by content, since CNTK and libsvm
both use that name. CNTK writes three layouts (Source/CNTKv2LibraryDll):
  * v1 ("legacy") models start with the UTF-16 marker ``B C N \\0``;
  * v2 models over 2 GB start with the little-endian magic 0x636e746b;
  * other v2 models are a serialized ``CNTK.proto.Dictionary`` (field 1,
    ``version``, comes first) whose keys include ``primitive_functions`` and
    whose type is ``CompositeFunction``. This one is a heuristic.
"""

from __future__ import annotations

from pathlib import Path

from onnxgate.plugins import ConverterSpec, hookimpl

LEGACY_MARKER = b"B\x00C\x00N\x00\x00\x00"
LARGE_V2_MAGIC = (0x636E746B).to_bytes(4, "little")
V2_KEYS = (b"primitive_functions", b"CompositeFunction")
#: Suffixes that mean CNTK whatever the content (a .cntk file may also be a
#: BrainScript config: the answer is the same).
CNTK_SUFFIXES = (".dnn", ".cmf", ".cntk")
_V2_SCAN = 1 << 20

REASON = (
    "CNTK is not supported: its last release (2.7) has packages only for Python 3.6 and older, "
    "so no supported interpreter can load this model. Export it to ONNX with CNTK itself "
    "(model.save('model.onnx', format=C.ModelFormat.ONNX), in a Python 3.6 environment) "
    "and run `onnxgate convert model.onnx`"
)


def is_cntk_content(head: bytes) -> bool:
    if head.startswith(LEGACY_MARKER) or head.startswith(LARGE_V2_MAGIC):
        return True
    return head[:1] == b"\x08" and all(key in head for key in V2_KEYS)


def sniff(path: Path) -> bool:
    if path.suffix.lower() in CNTK_SUFFIXES:
        return True
    from onnxgate.plugins import read_head

    return is_cntk_content(read_head(path, _V2_SCAN))


def load(path: Path, trusted: bool):
    from onnxgate.plugins import UsageError

    raise UsageError(f"{path}: {REASON}")


def convert(model, example, options):
    from onnxgate.plugins import UsageError

    raise UsageError(REASON)


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="cntk",
        framework="CNTK",
        description="recognises CNTK models and explains why they cannot be converted (Python <= 3.6 only)",
        convert=convert,
        run=None,
        load=load,
        suffixes=CNTK_SUFFIXES + (".model",),
        sniff=sniff,
    )

"""Text that came from a model (names, producer, messages) made safe for
where it goes: the terminal, XML 1.0, Markdown that CI posts as a comment."""

from __future__ import annotations

import html
import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-char ESC sequences
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
# C0 and C1 controls and DEL, except tab and newline
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\t]")
# what XML 1.0 forbids: C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def terminal(text: object, keep_newlines: bool = False) -> str:
    """``text`` without escape sequences or control characters; line breaks
    become spaces (one printed line stays one line) unless ``keep_newlines``."""
    out = _ESCAPES.sub("", str(text))
    if not keep_newlines:
        out = _LINE_BREAKS.sub(" ", out)
    return _CONTROLS.sub("", out)


def xml(text: object) -> str:
    """``text`` with escape sequences and every character XML 1.0 forbids removed."""
    return _NOT_XML.sub("", _ESCAPES.sub("", str(text)))


def markdown(text: object) -> str:
    """One Markdown table cell or list item: no HTML, no escapes, one line."""
    # a backtick would close the code span a name is shown in
    return html.escape(terminal(text), quote=False).replace("|", "\\|").replace("`", "'")

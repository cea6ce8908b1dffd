"""Open311's two formats. Every reply is built once as plain data (dicts, lists, strings,
numbers, booleans, None) and written as JSON or as the specification's XML: a root element
named for the list (`services`, `service_requests`, `errors`, ...), one element per item
(`service`, `request`, `error`, ...), a child element per field, and nested lists named by the
field with one element per entry (`attributes/attribute`, `values/value`, `notes/note`).

The format comes from the path's extension (`.json`, `.xml`); without one, from the Accept
header (JSON when asked for, else XML: the format every Open311 server must speak).

XML 1.0 cannot carry most control characters (nor U+FFFE, U+FFFF or a lone surrogate): a reply
with one is not well-formed, and a feed reader then fails on every request in it. Inputs refuse
them at the edge; the writer also replaces any that reach it from elsewhere with U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal
from xml.etree import ElementTree as ET

import msgspec
from litestar import Response

Format = Literal["json", "xml"]
JSON_TYPE: Final = "application/json; charset=utf-8"
XML_TYPE: Final = "text/xml; charset=utf-8"
# Everything outside XML 1.0's Char production.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A list field's name -> the element each of its entries is written as.
_ENTRY: Final[dict[str, str]] = {
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "notes": "note",
    "photos": "photo",
}


def split_format(name: str) -> tuple[str, Format | None]:
    """`street_light.json` -> (`street_light`, "json"); no known extension -> (name, None)."""
    for fmt in ("json", "xml"):
        if name.endswith("." + fmt):
            return name[: -len(fmt) - 1], fmt
    return name, None


def negotiate(path: str, accept: str | None) -> Format:
    _, fmt = split_format(path)
    if fmt is not None:
        return fmt
    return "json" if accept and "json" in accept.lower() else "xml"


def xml_text(value: str) -> str:
    """`value` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_text(str(value))


def _element(parent: ET.Element, name: str, value: Any) -> None:
    child = ET.SubElement(parent, name)  # names are this module's callers' own field names
    if isinstance(value, dict):
        for key, inner in value.items():
            _element(child, key, inner)
    elif isinstance(value, list):
        entry = _ENTRY.get(name, "item")
        for inner in value:
            _element(child, entry, inner)
    else:
        child.text = _text(value)


def to_xml(root: str, item: str | None, body: Any) -> bytes:
    """`body` a list (each entry an `item` element under `root`) or a dict (the fields of `root`)."""
    top = ET.Element(root)
    if isinstance(body, list):
        if item is None:
            raise ValueError("a list needs the name of its items")
        for entry in body:
            _element(top, item, entry)
    else:
        for key, value in body.items():
            _element(top, key, value)
    written: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return written


def reply(
    fmt: Format,
    root: str,
    item: str | None,
    body: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    if fmt == "json":
        content = msgspec.json.encode(body)
        media_type = JSON_TYPE
    else:
        content = to_xml(root, item, body)
        media_type = XML_TYPE
    return Response(content, status_code=status, media_type=media_type, headers=headers)

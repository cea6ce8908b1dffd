"""Notification templates: data (channels/templates/notify.toml), checked once when loaded, and
rendered with `str.format_map` over plain names only.

Why not a template engine: the texts are short, translators edit them, and a template must never
be able to run code or reach an object's attributes. `str.format_map` could (`{x.__class__}`),
so every placeholder is checked when the file is loaded: a plain parameter name the template
declares, without conversion or format spec. A file that breaks a rule fails at start-up, not in
the middle of sending.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Final, Literal, get_args

import msgspec

__all__ = [
    "LANGUAGES",
    "Language",
    "Rendered",
    "Template",
    "TemplateError",
    "language_of_locale",
    "load_templates",
    "render",
    "template",
]

Language = Literal["zh-CN", "en"]
Channel = Literal["email", "sms"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)
# Filled in at send time from identity, never stored with the message.
RECIPIENT_PARAM: Final = "name"
# C0 controls (but tab and line feed, which `_clean` handles by the part), carriage return, DEL,
# C1 controls and the Unicode line and paragraph separators: none reaches a message as itself.
_CONTROL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Longer SMS are split by the network into several paid parts; 300 is about five Chinese parts.
_SMS_MAX: Final = 300


class TemplateError(ValueError):
    """The template file breaks a rule (a missing language, an unknown or unsafe placeholder)."""


class Variant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    subject: str
    body: str
    sms: str


class Template(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    params: tuple[str, ...]
    variants: dict[str, Variant]


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    """A message ready to send: `subject` is empty for an SMS."""

    channel: Channel
    subject: str
    text: str


def language_of_locale(locale: str | None) -> Language:
    """Identity's locale ('zh', 'en', or a BCP 47 tag) as a template language; Chinese by default."""
    return "en" if locale and locale.lower().startswith("en") else "zh-CN"


def _placeholders(text: str, where: str, allowed: frozenset[str]) -> None:
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as error:
        raise TemplateError(f"{where}: {error}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if conversion or spec:
            raise TemplateError(f"{where}: {{{field}}} may have no conversion or format spec")
        if not field.isidentifier() or field not in allowed:
            raise TemplateError(f"{where}: {{{field}}} is not a parameter of this template")


def parse_templates(text: str) -> dict[str, Template]:
    """Parse and check a template file (every language, every part, safe placeholders)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TemplateError(f"not TOML: {error}") from None
    templates: dict[str, Template] = {}
    for key, entry in document.items():
        if not isinstance(entry, dict):
            raise TemplateError(f"{key}: a template is a table")
        params = entry.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) and p.isidentifier() for p in params):
            raise TemplateError(f"{key}.params: a list of parameter names")
        allowed = frozenset([*params, RECIPIENT_PARAM])
        variants: dict[str, Variant] = {}
        for language in LANGUAGES:
            raw = entry.get(language)
            if not isinstance(raw, dict):
                raise TemplateError(f"{key}: no {language} text")
            try:
                variant = msgspec.convert(raw, Variant)
            except msgspec.ValidationError as error:
                raise TemplateError(f"{key}.{language}: {error}") from None
            for part in ("subject", "body", "sms"):
                _placeholders(getattr(variant, part), f"{key}.{language}.{part}", allowed)
            if "\n" in variant.subject:
                raise TemplateError(f"{key}.{language}.subject: one line")
            variants[language] = variant
        unknown = set(entry) - {"params", *LANGUAGES}
        if unknown:
            raise TemplateError(f"{key}: unknown entries {sorted(unknown)}")
        templates[key] = Template(key=key, params=tuple(params), variants=variants)
    return templates


@functools.cache
def load_templates() -> dict[str, Template]:
    """The shipped templates, read and checked once per process."""
    text = resources.files("channels").joinpath("templates").joinpath("notify.toml").read_text("utf-8")
    return parse_templates(text)


def template(key: str) -> Template:
    found = load_templates().get(key)
    if found is None:
        raise KeyError(f"no notification template {key!r}")
    return found


def _clean(value: object, *, one_line: bool) -> str:
    """A value as template text. It is data, never markup or more placeholders: braces in it are
    not interpreted (format_map does not re-parse values). Control characters never pass (they
    become spaces); in a one-line part (a subject, an SMS) neither do line breaks: every run of
    white space, a line break included, becomes one space. In an e-mail body line breaks stay
    (a rejection's reason may have several lines), as line feeds."""
    text = str(value)
    if one_line:
        return " ".join(_CONTROL.sub(" ", text).split())
    lines = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    return "\n".join(line.rstrip() for line in lines)


def render(
    key: str, language: Language, channel: Channel, params: Mapping[str, object], *, name: str
) -> Rendered:
    """The message of template `key` in `language` for `channel`; a missing parameter is a
    `KeyError` naming it (a publisher's bug, never silently an empty gap)."""
    chosen = template(key)
    variant = chosen.variants[language]
    raw = {**{param: params[param] for param in chosen.params}, RECIPIENT_PARAM: name}
    one_line = {param: _clean(value, one_line=True) for param, value in raw.items()}
    if channel == "sms":
        text = variant.sms.format_map(one_line)
        return Rendered(channel="sms", subject="", text=text[:_SMS_MAX])
    subject = " ".join(variant.subject.format_map(one_line).split())  # no header injection by a value
    body = variant.body.format_map({param: _clean(value, one_line=False) for param, value in raw.items()})
    return Rendered(channel="email", subject=subject, text=body)

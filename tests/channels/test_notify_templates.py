"""Notification templates: every one in both languages and both channels, placeholders that can
only be plain parameter names, and rendering that never interprets what it substitutes."""

from __future__ import annotations

import pytest

from channels.notify_templates import (
    LANGUAGES,
    TemplateError,
    language_of_locale,
    load_templates,
    parse_templates,
    render,
)

_GOOD = """
[greeting]
params = ["number"]
[greeting.zh-CN]
subject = "编号 {number}"
body = "{name}，您好：{number}"
sms = "{number}"
[greeting.en]
subject = "Number {number}"
body = "Dear {name}: {number}"
sms = "{number}"
"""

EVENTS = [
    "report_received",
    "case_dispatched",
    "case_fixed",
    "case_rejected",
    "case_duplicate",
    "case_closed",
]
STAFF = ["deadline_warned", "deadline_breached"]
APPLICATIONS = ["application_received", "application_returned", "application_decided", "certificate_ready"]


def test_the_shipped_templates_cover_every_event_in_both_languages() -> None:
    templates = load_templates()
    assert set(templates) == {*EVENTS, *STAFF, *APPLICATIONS}
    for key, template in templates.items():
        assert set(template.variants) == set(LANGUAGES), key
        for language, variant in template.variants.items():
            assert variant.subject, (key, language)
            assert variant.body, (key, language)
            assert variant.sms, (key, language)
    # The Chinese text is Chinese, the English text English.
    assert "报告" in templates["report_received"].variants["zh-CN"].body
    assert "report" in templates["report_received"].variants["en"].body
    assert "{what_to_fix}" in templates["application_returned"].variants["en"].body


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [
        ("{number.__class__}", "not a parameter"),
        ("{number[0]}", "not a parameter"),
        ("{number!r}", "no conversion"),
        ("{number:>40}", "no conversion or format spec"),
        ("{secret}", "not a parameter"),
        ("{", "Single '{'"),
    ],
)
def test_an_unsafe_or_unknown_placeholder_is_refused_when_loading(placeholder: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_templates(
            _GOOD.replace('sms = "{number}"\n[greeting.en]', f'sms = "{placeholder}"\n[greeting.en]')
        )


def test_a_missing_language_or_part_is_refused() -> None:
    english_only = (
        _GOOD.split("[greeting.zh-CN]", maxsplit=1)[0] + "[greeting.en]" + _GOOD.split("[greeting.en]")[1]
    )
    with pytest.raises(TemplateError, match="no zh-CN text"):
        parse_templates(english_only)
    without_english_sms = _GOOD.rstrip().rsplit("\n", 1)[0] + "\n"
    with pytest.raises(TemplateError, match=r"greeting\.en"):
        parse_templates(without_english_sms)
    with pytest.raises(TemplateError, match="unknown entries"):
        parse_templates(_GOOD + '[greeting.fr]\nsubject = "x"\nbody = "x"\nsms = "x"\n')


def test_rendering_substitutes_values_as_data() -> None:
    mail = render(
        "case_closed", "en", "email", {"number": "GC-1", "rating_url": "https://x/{name}"}, name="Li"
    )
    assert mail.subject == "Your report GC-1 is closed: how did we do?"
    assert mail.text.startswith("Dear Li,")
    assert "https://x/{name}" in mail.text  # a value's braces are not a placeholder
    sms = render("case_closed", "zh-CN", "sms", {"number": "GC-1", "rating_url": "https://x"}, name="李")
    assert sms.subject == ""
    assert sms.text == "【一窗通】您的报告GC-1已办结，请评价：https://x"
    # A value cannot add a header line to the subject.
    injected = render("report_received", "en", "email", {"number": "1\r\nBcc: x@y"}, name="Li")
    assert "\n" not in injected.subject
    assert "\r" not in injected.subject
    with pytest.raises(KeyError, match="rating_url"):
        render("case_closed", "en", "email", {"number": "GC-1"}, name="Li")


def test_line_breaks_and_control_characters_stay_out_of_one_line_parts() -> None:
    reason = "Not ours:\r\nthe estate's\x00 light.\u2028Call\x1b[31m them\x85."
    params = {"number": "GC-1\nBcc: x@y", "reason": reason}
    name = "Li\r\nX-Evil: 1"
    sms = render("case_rejected", "en", "sms", params, name=name)
    assert sms.text == (
        "OneWindow: your report GC-1 Bcc: x@y was not accepted: Not ours: the estate's light. Call [31m them ."
    )
    mail = render("case_rejected", "en", "email", params, name=name)
    assert mail.subject == "Your report GC-1 Bcc: x@y was not accepted"
    # The body keeps a value's line breaks (as line feeds), never its other control characters,
    # and the name is a value like any other.
    assert mail.text.startswith("Dear Li\nX-Evil: 1,\n")
    assert "The reason: Not ours:\nthe estate's  light. Call [31m them ." in mail.text
    for part in (sms.text, mail.subject, mail.text):
        assert not any(c in part for c in "\x00\x1b\r\x85\u2028")


def test_identity_locales_map_to_template_languages() -> None:
    assert language_of_locale("en") == "en"
    assert language_of_locale("en-GB") == "en"
    assert language_of_locale("zh") == "zh-CN"
    assert language_of_locale(None) == "zh-CN"

"""Open311's XML writer never emits a character XML 1.0 cannot carry, whatever reaches it: inputs
refuse control characters at the edge, and text that got into a case some other way (an older
client, another channel, a hand-made fix in SQL) still gives a well-formed feed for every reader."""

from __future__ import annotations

import httpx
from defusedxml import ElementTree  # type: ignore[import-untyped]  # no stubs in the dev dependencies

from channels.open311_format import to_xml, xml_text
from grid import seed as grid_seed
from onewindow.db import Connection
from tests.channels.open311_fixtures import form, xml

pytest_plugins = ["tests.channels.open311_fixtures"]

LAT, LON = grid_seed.grid_centre("G-0107")
UNCARRIABLE = "a\x00b\x01c\x08d\x0be\x0cf\x1fg\ufffeh\uffffi\ud800j"


def test_characters_xml_cannot_carry_become_the_replacement_character() -> None:
    assert xml_text(UNCARRIABLE) == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\ufffdh\ufffdi\ufffdj"
    kept = "tab\tline\nreturn\r DEL\x7f \u00e9 \u4e2d \U0001f600 \ud7ff \ue000 \ufffd"
    assert xml_text(kept) == kept


def test_the_writer_gives_well_formed_xml_for_any_text() -> None:
    written = to_xml(
        "service_requests",
        "request",
        [{"description": UNCARRIABLE, "extended_attributes": {"notes": [{"description": "\x02"}]}}],
    )
    root = ElementTree.fromstring(written)
    assert root.findtext("request/description") == xml_text(UNCARRIABLE)
    assert root.findtext("request/extended_attributes/notes/note/description") == "\ufffd"


async def test_a_case_with_a_control_character_from_elsewhere_still_reads_as_xml(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection
) -> None:
    reply = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(
            api_key=o311_key,
            service_code="street_light",
            lat=str(LAT),
            long=str(LON),
            description="Light out.",
            attributes={"lights_out": "1", "pattern": "off"},
        ),
    )
    number = reply.json()[0]["service_request_id"]
    await conn.execute(
        "UPDATE grid.cases SET description = $2, address = $3 WHERE number = $1",
        number,
        "Light\x01 out\x1b[0m.",
        "No.\x0c5",
    )
    root = xml(await o311_http.get("/open311/v2/requests.xml"))
    request = next(r for r in root.findall("request") if r.findtext("service_request_id") == number)
    assert request.findtext("description") == "Light\ufffd out\ufffd[0m."
    assert request.findtext("address") == "No.\ufffd5"
    assert (await o311_http.get(f"/open311/v2/requests/{number}.json")).json()[0]["description"] == (
        "Light\x01 out\x1b[0m."  # JSON carries any character, escaped
    )

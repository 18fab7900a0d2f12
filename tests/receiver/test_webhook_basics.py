"""The webhook's happy path over real HTTP: store, then acknowledge."""

from __future__ import annotations

import httpx

from tests.conftest import ServerProcess

DOC = b"""<?xml version="1.0" encoding="utf-8" ?>
<response>
  <state id_sms="3234" time="2011-01-01 12:57:46" sms="deliver">deliver</state>
  <state id_sms="3235" time="2011-01-01 12:57:46" sms="expired" viber="read">read</state>
  <state id_sms="3236" time="2011-01-01 12:57:46" viber="deliver">deliver</state>
  <state id_sms="3237" time="" sms="send">send</state>
</response>"""


def test_documented_example_is_acknowledged_in_order(server: ServerProcess) -> None:
    """The protocol page's own example: every id echoed, in document order, as XML."""
    reply = httpx.post(f"{server.url}/webhook", content=DOC)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    assert reply.content == (
        b'<?xml version="1.0" encoding="utf-8" ?>\n<response>'
        b"<id_sms>3234</id_sms><id_sms>3235</id_sms><id_sms>3236</id_sms><id_sms>3237</id_sms>"
        b"</response>"
    )
    message = httpx.get(f"{server.url}/api/messages/3235").json()
    assert (message["status"], message["sms"], message["viber"]) == ("read", "expired", "read")
    assert message["time"] == "2011-01-01T09:57:46+00:00"

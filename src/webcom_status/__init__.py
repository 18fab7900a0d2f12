"""webcom-status: the Webcom SMS/Viber delivery-status webhook, both sides of the wire.

The pieces a program embeds: :func:`parse_push` and :func:`answer` (pure),
:func:`open_storage`, and :func:`create_app` (the receiver as an ASGI app).
"""

from webcom_status.config import ReceiverSettings
from webcom_status.model import Flavour, Message, Push, Reject, State
from webcom_status.protocol import answer, parse_push
from webcom_status.receiver import create_app
from webcom_status.storage import Storage, open_storage

__all__ = [
    "Flavour",
    "Message",
    "Push",
    "ReceiverSettings",
    "Reject",
    "State",
    "Storage",
    "answer",
    "create_app",
    "open_storage",
    "parse_push",
]

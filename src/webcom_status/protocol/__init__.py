"""The wire format, pure: parse a push and build the answer (the receiver's side);
build a push and read the answer (the provider's side)."""

from webcom_status.protocol._answer import answer, content_type, error
from webcom_status.protocol._fields import parse_time
from webcom_status.protocol._outgoing import Answer, Finding, Outgoing, build_push, read_answer
from webcom_status.protocol._push import detect, parse_push

__all__ = [
    "Answer",
    "Finding",
    "Outgoing",
    "answer",
    "build_push",
    "content_type",
    "detect",
    "error",
    "parse_push",
    "parse_time",
    "read_answer",
]

"""The wire format, pure: parse a push, build the answer."""

from webcom_status.protocol._answer import answer, content_type, error
from webcom_status.protocol._fields import parse_time
from webcom_status.protocol._push import detect, parse_push

__all__ = ["answer", "content_type", "detect", "error", "parse_push", "parse_time"]

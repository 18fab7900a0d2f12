"""The receiving side: the webhook, the query API, access control."""

from webcom_status.receiver.app import ReceiverApp, create_app

__all__ = ["ReceiverApp", "create_app"]

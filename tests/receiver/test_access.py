"""Access control of the webhook: secret path, HTTP Basic, IP allowlist, method.

A refused request stores nothing, not even a reject: the guards answer before
the body is read. ``/healthz``, ``/api`` and ``/metrics`` are not behind them
(they are for the operator; put them behind the proxy if they must be closed).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.receiver.support import (
    BASELINE,
    Receiver,
    acked,
    assert_baseline_unharmed,
    before,
    seed,
    state,
    xml_doc,
)

TOKEN = "s3cret-Token_0123456789"
USER, PASSWORD = "webcom", "pa:ss w0rd"
PUSH = xml_doc(state(10), state(11, "read", viber="read"))
OPEN_PATHS = ["/healthz", "/api/stats", "/api/rejects", "/api/messages/1", "/metrics"]


@pytest.fixture(scope="module")
def with_token(start_receiver: Callable[..., Receiver]) -> Receiver:
    """Pushes accepted only at ``/webhook/TOKEN``."""
    started = start_receiver("token", "--token", TOKEN)
    started.webhook_path = f"/webhook/{TOKEN}"
    return seed(started)


@pytest.fixture(scope="module")
def with_basic(start_receiver: Callable[..., Receiver]) -> Receiver:
    """Pushes accepted only with HTTP Basic credentials."""
    started = start_receiver("basic", "--basic-auth", f"{USER}:{PASSWORD}")
    started.auth = (USER, PASSWORD)
    return seed(started)


@pytest.fixture(scope="module")
def only_10_8(start_receiver: Callable[..., Receiver]) -> Receiver:
    """Pushes accepted only from 10.0.0.0/8 (the tests connect from 127.0.0.1)."""
    started = start_receiver("ten", "--allow-ip", "10.0.0.0/8")
    reply = started.push(BASELINE, headers={"x-forwarded-for": "10.0.0.1"})
    assert reply.status_code == 200, reply.text
    return started


@pytest.fixture(scope="module")
def only_loopback(start_receiver: Callable[..., Receiver]) -> Receiver:
    """Pushes accepted only from 127.0.0.1; no proxy trusted for X-Forwarded-For."""
    flags = ("--allow-ip", "127.0.0.1/32", "--forwarded-allow-ips", "192.0.2.1")
    return seed(start_receiver("loopback", *flags))


def assert_denied(
    receiver: Receiver, reply: httpx.Response, status: int, message: str, stats: dict[str, int]
) -> None:
    """Refused by a guard: the status, its plain-text reason, and nothing stored at all."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert message in reply.text
    assert acked(reply) == []
    assert receiver.stats() == stats


@pytest.mark.parametrize(
    "path",
    [
        "/webhook",
        "/webhook/",
        "/webhook/wrong-token-0123456789",
        f"/webhook/{TOKEN[:-1]}",
        f"/webhook/{TOKEN}x",
        f"/webhook/{TOKEN}/more",
        f"/webhook/x/{TOKEN}",
    ],
)
def test_token_only_the_secret_path_takes_pushes(with_token: Receiver, path: str) -> None:
    """Any other path under /webhook is 404, as if there were no webhook at all."""
    then = before(with_token)

    reply = with_token.push(PUSH, path=path)

    assert_denied(with_token, reply, 404, "not found", then.stats)
    assert_baseline_unharmed(with_token, then)


def test_token_the_secret_path_stores_and_answers(with_token: Receiver) -> None:
    """POST /webhook/TOKEN is the webhook."""
    reply = with_token.push(PUSH)

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [10, 11]


def test_token_get_on_the_secret_path_is_405(with_token: Receiver) -> None:
    """The right path with the wrong method: 405 with ``Allow: POST``."""
    reply = with_token.get(f"/webhook/{TOKEN}")

    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"


def test_token_get_elsewhere_is_404_not_405(with_token: Receiver) -> None:
    """Without the secret the method is not even looked at: the webhook stays hidden."""
    reply = with_token.get("/webhook")

    assert reply.status_code == 404
    assert "allow" not in reply.headers


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="missing"),
        pytest.param(httpx.BasicAuth(USER, "wrong"), id="wrong-password"),
        pytest.param(httpx.BasicAuth("someone", PASSWORD), id="wrong-user"),
        pytest.param(httpx.BasicAuth(USER, PASSWORD.partition(":")[0]), id="truncated-password"),
    ],
)
def test_basic_wrong_or_missing_credentials_are_401(
    with_basic: Receiver, auth: httpx.BasicAuth | None
) -> None:
    """401 with a ``WWW-Authenticate: Basic`` challenge; nothing stored."""
    then = before(with_basic)

    reply = with_basic.client.post(
        "/webhook", content=PUSH, auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth
    )

    assert_denied(with_basic, reply, 401, "HTTP Basic credentials are required", then.stats)
    assert reply.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    "header",
    ["Bearer d2ViY29tOnBhOnNzIHcwcmQ=", "Basic not*base64", "Basic", "basic"],
)
def test_basic_malformed_authorization_is_401(with_basic: Receiver, header: str) -> None:
    """Another scheme, or a header that is not base64, is a missing credential."""
    then = before(with_basic)

    reply = with_basic.client.post("/webhook", content=PUSH, headers={"authorization": header})

    assert_denied(with_basic, reply, 401, "HTTP Basic credentials are required", then.stats)


def test_basic_right_credentials_are_200(with_basic: Receiver) -> None:
    """The registered ``user:password`` (a colon in the password is fine) gets through."""
    reply = with_basic.push(PUSH)

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [10, 11]


def test_allowlist_refuses_other_addresses_with_403(only_10_8: Receiver) -> None:
    """127.0.0.1 is not in 10.0.0.0/8: 403, nothing stored."""
    stats = only_10_8.stats()

    reply = only_10_8.push(PUSH)

    assert_denied(only_10_8, reply, 403, "this address may not push statuses", stats)


def test_allowlist_sees_the_client_behind_a_trusted_proxy(only_10_8: Receiver) -> None:
    """From a trusted proxy (127.0.0.1 by default), X-Forwarded-For names the client."""
    reply = only_10_8.push(PUSH, headers={"x-forwarded-for": "10.1.2.3"})

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [10, 11]


def test_allowlist_admits_a_listed_address(only_loopback: Receiver) -> None:
    """127.0.0.1 within 127.0.0.1/32: the push is stored."""
    reply = only_loopback.push(xml_doc(state(12)))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [12]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(only_loopback: Receiver) -> None:
    """X-Forwarded-For cannot move a client out of the allowlist unless its proxy is trusted."""
    then = before(only_loopback)

    reply = only_loopback.push(xml_doc(state(13)), headers={"x-forwarded-for": "203.0.113.9"})

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [13]
    bad = only_loopback.push(b"<nope", headers={"x-forwarded-for": "203.0.113.9"})
    assert bad.status_code == 400
    [reject] = only_loopback.rejects(then.last_reject)
    assert reject["remote"].startswith("127.0.0.1:")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_webhook_takes_only_post(only_loopback: Receiver, method: str) -> None:
    """Any other method on /webhook: 405 with ``Allow: POST``; nothing stored."""
    then = before(only_loopback)

    reply = only_loopback.client.request(method, "/webhook", content=PUSH)

    assert_denied(only_loopback, reply, 405, "the webhook takes POST", then.stats)
    assert reply.headers["allow"] == "POST"
    assert only_loopback.last_reject_id() == then.last_reject


@pytest.mark.parametrize("path", OPEN_PATHS)
@pytest.mark.parametrize("guarded", ["with_token", "with_basic", "only_10_8"])
@pytest.mark.usefixtures("engine")  # the receivers come from getfixturevalue: name their param
def test_health_api_and_metrics_are_not_behind_the_webhook_guards(
    request: pytest.FixtureRequest, guarded: str, path: str
) -> None:
    """No token, no credentials, an unlisted address: the read side still answers 200."""
    receiver: Receiver = request.getfixturevalue(guarded)

    reply = httpx.get(receiver.url + path)

    assert reply.status_code == 200, reply.text

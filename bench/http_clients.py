"""Requests/s of aiohttp and httpx posting the same 100-state push to bench/echo.py.

    uvicorn --app-dir bench echo:app --port 18090 --loop uvloop --http httptools &
    python bench/http_clients.py [--url http://127.0.0.1:18090/webhook] [--requests 2000]

Eight concurrent senders on one event loop (uvloop), each client in turn,
twice, in one process: the ratio is what counts, not the absolute numbers.
"""

import argparse
import asyncio
import time

import aiohttp
import httpx
import uvloop

from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing, build_push

BODY = build_push(
    [Outgoing(i, "deliver", "2026-11-27 10:00:00") for i in range(1, 101)], Flavour.XML
)
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
SENDERS = 8


async def with_httpx(url: str, requests: int) -> float:
    async with httpx.AsyncClient() as client:

        async def sender() -> None:
            for _ in range(requests // SENDERS):
                (await client.post(url, content=BODY, headers=HEADERS)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        return requests / (time.perf_counter() - started)


async def with_aiohttp(url: str, requests: int) -> float:
    async with aiohttp.ClientSession() as session:

        async def sender() -> None:
            for _ in range(requests // SENDERS):
                async with session.post(url, data=BODY, headers=HEADERS) as answer:
                    answer.raise_for_status()
                    await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        return requests / (time.perf_counter() - started)


async def main(url: str, requests: int) -> None:
    for _ in range(2):
        slow = await with_httpx(url, requests)
        fast = await with_aiohttp(url, requests)
        print(f"httpx {slow:,.0f} req/s   aiohttp {fast:,.0f} req/s   ratio {fast / slow:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:18090/webhook")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    uvloop.run(main(args.url, args.requests))

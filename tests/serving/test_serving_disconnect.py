"""A client that leaves before its answer is written costs one disconnect line, never a traceback
(CI run of 2026-12-07: ``test_chaos_short`` saw aiohttp's "Cannot write to closing transport"
traceback from the middleware's own ``write_eof``)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from exporter.serving.budget import MemoryBudget
from exporter.serving.logs import ConnectionLog, RateLimitedLog, TracebackLog
from exporter.serving.server import RESERVATION, _errors_as_json


async def _serve_one_left_request(budget: MemoryBudget, logger: logging.Logger) -> RateLimitedLog:
    disconnects = RateLimitedLog("client disconnected mid-request", interval_s=0.0, logger=logger)
    failures = TracebackLog(interval_s=0.0, logger=logger)
    answered = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        request[RESERVATION] = budget.reserve(1000, "the request body")
        request.transport.close()  # the client is gone by the time the answer is written
        answered.set()
        return web.Response(body=b"x" * 100)

    app = web.Application(middlewares=[_errors_as_json(disconnects, failures)])
    app.router.add_post("/infer", handler)
    runner = web.AppRunner(app, access_log=None, logger=ConnectionLog(failures, logger))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.wait_for(answered.wait(), 30)
        await reader.read()  # EOF: the server closed the connection
        writer.close()
        for _ in range(100):  # let the handler's task finish writing (or failing to)
            await asyncio.sleep(0)
    finally:
        await runner.cleanup()
    return disconnects


def test_a_client_gone_before_the_answer_is_one_line_and_frees_its_bytes(caplog):
    logger = logging.getLogger("test.disconnect")
    budget = MemoryBudget(10_000)
    with caplog.at_level(logging.DEBUG):
        disconnects = asyncio.run(_serve_one_left_request(budget, logger))
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert disconnects.count == 1
    assert budget.used == 0

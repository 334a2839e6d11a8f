"""The ASGI app: ``create_app(settings)``; ``twin serve`` runs it with uvicorn.

Every error is a JSON ``{"detail": "..."}`` (or a page) with a status that says what kind it is,
and never a traceback: 400/422 bad input naming the field, 401 the token, 403 the role, 404 not
found (another team's submission too), 409 not ready, 413 too large, 415 not ONNX, 429 over the
daily limit, 500 a fault of the server (logged there).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from service import jobs
from service.auth import AuthError
from service.routes import leaderboard, pages, submissions, suites
from service.settings import Settings

log = logging.getLogger("twin.serve")


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "the request"


def create_app(settings: Settings, factory: sessionmaker[Session] | None = None) -> FastAPI:
    """The service over the database in ``settings.db`` (upgraded to the newest schema)."""
    from service.db import open_database

    factory = factory or open_database(settings.db)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(_reaper(app))
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(
        title="Factory Twin evaluation service",
        description="Submit ONNX policies, follow their jobs, read the leaderboards.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.factory = factory
    app.add_middleware(BodyLimit, limit=lambda: app.state.settings.max_upload_bytes + 2**16)
    for r in (submissions.router, suites.router, leaderboard.router, pages.router):
        app.include_router(r)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(pages._Login)
    async def _login(request: Request, exc: pages._Login) -> Response:
        return pages.login_redirect(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{_field(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)[:2000]}, status_code=422)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; it is logged on the server"}, status_code=500)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


class BodyLimit:
    """Refuse a request body over ``limit()`` bytes (413) as it arrives, before anything spools it
    to disk: by its Content-Length, or by counting a chunked body."""

    def __init__(self, app, limit) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = JSONResponse({"detail": f"the request body is over the {limit:,}-byte limit"}, status_code=413)
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await too_big(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooBig
            return message

        try:
            await self.app(scope, counted, send)
        except _TooBig:
            await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


async def _reaper(app: FastAPI) -> None:
    """Take back the jobs of silent workers even when no worker is left to notice."""
    settings: Settings = app.state.settings
    while True:
        await asyncio.sleep(settings.heartbeat_seconds)
        try:
            for job_id, what in await run_in_threadpool(jobs.reap, app.state.factory, settings):
                log.warning("job %s had a silent worker: %s", job_id, what)
        except Exception:
            log.exception("reaping silent workers' jobs failed; trying again")

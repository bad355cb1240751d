"""Routes of dependency builds: start one from code, follow its log, list a function's."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from ember.api.params import FunctionName
from ember.api.schemas import BuildIn, BuildList, BuildOut, BuildSummaryOut
from ember.control.builds import BuildService
from ember.errors import InvalidSpec
from ember.model.function import check_name

router = APIRouter(tags=["builds"])


def _service(request: Request) -> BuildService:
    service: BuildService = request.app.state.services.builds
    return service


@router.post("/builds", response_model=BuildOut, status_code=status.HTTP_202_ACCEPTED)
def start_build(body: BuildIn, request: Request) -> BuildOut:
    """Install the code's requirements.txt in the background: the build answers running,
    or succeeded at once when the same requirements were built for this Python before."""
    return BuildOut.of(_service(request).start(body.decode(), body.function))


@router.get("/builds/{build_id}", response_model=BuildOut)
async def get_build(
    build_id: str, request: Request,
    offset: Annotated[int, Query(ge=0, description="only the log after this many characters")]
    = 0,
    wait_s: Annotated[float, Query(
        ge=0, le=60, description="wait this long for log past offset, or for the end",
    )] = 0,
) -> BuildOut:
    """A build, with its log from ``offset`` on; with ``wait_s`` the answer comes when the
    log grows past ``offset``, when the build ends, or when the wait is over."""
    service = _service(request)
    build = await asyncio.to_thread(service.get, build_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.02
    while not build.final and build.log_size <= offset and loop.time() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.25)
        build = await asyncio.to_thread(service.get, build_id)
    return BuildOut.of(build, offset)


@router.get("/functions/{name}/builds", response_model=BuildList)
def list_builds(name: FunctionName, request: Request) -> BuildList:
    """The builds recorded against the function, newest first, without their logs; those
    of a create that failed on its build are listed though the function does not exist."""
    try:
        check_name("function", name)
    except ValueError as exc:
        raise InvalidSpec(str(exc), {"field": "name"}) from exc
    return BuildList(builds=[BuildSummaryOut.of(b) for b in _service(request).list_for(name)])

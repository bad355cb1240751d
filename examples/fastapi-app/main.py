"""Quotes over HTTP: typed routes, a lifespan that loads data once per instance, and a
server-sent event stream."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

QUOTES: list[str] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    QUOTES.extend([
        "Simplicity is prerequisite for reliability.",
        "Make it work, make it right, make it fast.",
        "Premature optimization is the root of all evil.",
    ])
    yield
    QUOTES.clear()


app = FastAPI(title="quotes", lifespan=lifespan)


class NewQuote(BaseModel):
    text: str


@app.get("/quotes")
async def list_quotes(limit: int = 10) -> list[dict[str, object]]:
    return [{"id": i, "text": q} for i, q in enumerate(QUOTES[:limit], start=1)]


@app.get("/quotes/{quote_id}")
async def get_quote(quote_id: int) -> dict[str, object]:
    if not 1 <= quote_id <= len(QUOTES):
        raise HTTPException(404, f"no quote {quote_id}")
    return {"id": quote_id, "text": QUOTES[quote_id - 1]}


@app.post("/quotes", status_code=201)
async def add_quote(quote: NewQuote) -> dict[str, object]:
    QUOTES.append(quote.text)
    return {"id": len(QUOTES), "text": quote.text}


@app.get("/ticker")
async def ticker(count: int = 3) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        for i in range(count):
            yield f"data: {QUOTES[i % len(QUOTES)]}\n\n"
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/invoke")
async def invoke(event: dict[str, object]) -> dict[str, object]:
    """Direct and async invocations (ember invoke fastapi-quotes) arrive here."""
    return {"quotes": len(QUOTES), "event": event}

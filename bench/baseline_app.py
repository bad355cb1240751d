"""The raw baseline: a bare ASGI app on uvicorn answering the same JSON as the benchmark
function, with no platform in between."""

import orjson

BODY = orjson.dumps({"ok": True, "echo": {"n": 1}})


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})

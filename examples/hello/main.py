"""A first Ember function: greets whoever the event names.

Invoked directly (``ember invoke hello --data '{"name": "Ada"}'``) the event is the payload
itself. Through a trigger it is a CloudEvent: its ``data`` holds the message, and for an HTTP
trigger the request, whose body (``{"name": "Ada"}``) or query (``?name=Ada``) names someone.
"""

import base64
import json
import os
import time

STARTED = 0.0


def init(context):
    """Runs once per instance, before the first event: put expensive setup here."""
    global STARTED
    STARTED = time.time()


def fields(event):
    """The fields of the message, whichever way the event came."""
    if not isinstance(event, dict):
        return {}
    if "specversion" not in event:  # invoked directly: the event is the payload
        return event
    data = event.get("data")
    if not isinstance(data, dict):
        return {}
    if event.get("type") != "dev.ember.http.request":
        return data
    found = dict(data.get("query") or {})
    body = data.get("body")
    if body:
        if data.get("isBase64Encoded"):
            body = base64.b64decode(body)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            found.update(parsed)
    return found


def handler(event, context):
    name = fields(event).get("name") or "world"
    context.logger.info("greeting %s", name)
    return {
        "message": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "request_id": context.request_id,
        "version": context.function_version,
        "instance_age_s": round(time.time() - STARTED, 3),
    }

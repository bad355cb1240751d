"""A first Ember function: greets whoever the event names."""

import os
import time

STARTED = 0.0


def init(context):
    """Runs once per instance, before the first event: put expensive setup here."""
    global STARTED
    STARTED = time.time()


def handler(event, context):
    name = (event or {}).get("name", "world") if isinstance(event, dict) else "world"
    context.logger.info("greeting %s", name)
    return {
        "message": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "request_id": context.request_id,
        "version": context.function_version,
        "instance_age_s": round(time.time() - STARTED, 3),
    }

"""A function that imports its helper from the ``greetings`` layer."""

import greetings


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {"message": greetings.greet(name)}

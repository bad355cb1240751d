"""Tells the customer what became of their order (a stand-in for an e-mail service).

Takes ``{"orderId", "email", "shipped", "carrier"?, "tracking"?}`` and returns the message
it would send, without sending anything.
"""


def handler(event, context):
    order_id = event["orderId"]
    if event.get("shipped"):
        subject = f"Order {order_id} is on its way"
        body = f"Your order shipped with {event.get('carrier') or 'our carrier'}"
        if event.get("tracking"):
            body += f", tracking number {event['tracking']}"
        body += "."
    else:
        subject = f"Order {order_id} is delayed"
        body = "Your order has not shipped yet; we will write again when it does."
    context.logger.info("notifying %s: %s", event.get("email") or "nobody", subject)
    return {"to": event.get("email", ""), "subject": subject, "body": body}

"""The order pipeline's first step: checks an order and returns it with its total.

An order is ``{"orderId", "items": [{"sku", "qty", "price"}], "card", "email"}``; a
``total``, when given, must be the sum of the items. A bad order raises, which fails the
workflow's ``validate`` task (and so the execution) with the message below.
"""


def handler(event, context):
    if not isinstance(event, dict):
        raise ValueError("an order is a JSON object")
    order_id = event.get("orderId")
    if not isinstance(order_id, str) or not order_id:
        raise ValueError("the order has no orderId")
    items = event.get("items")
    if not isinstance(items, list) or not items:
        raise ValueError(f"order {order_id} has no items")
    total = 0.0
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("sku"):
            raise ValueError(f"order {order_id}: item {index} has no sku")
        qty, price = item.get("qty"), item.get("price")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ValueError(f"order {order_id}: item {index} needs a qty of at least 1")
        if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
            raise ValueError(f"order {order_id}: item {index} needs a price of 0 or more")
        total += qty * price
    total = round(total, 2)
    if "total" in event and round(float(event["total"]), 2) != total:
        raise ValueError(f"order {order_id}: total {event['total']} is not the items' {total}")
    context.logger.info("order %s is valid: %d item(s), total %.2f", order_id, len(items), total)
    return {
        "orderId": order_id,
        "items": items,
        "total": total,
        "card": event.get("card", ""),
        "email": event.get("email", ""),
    }

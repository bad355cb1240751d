"""Reserves an order's items in the warehouse (a stand-in for an inventory service).

Takes ``{"orderId", "items": [{"sku", "qty", …}]}`` and returns the reservation; its id is
derived from the order id, so reserving the same order again gives the same reservation.
"""

import hashlib


def handler(event, context):
    order_id = event["orderId"]
    lines = [{"sku": item["sku"], "qty": item["qty"]} for item in event["items"]]
    reservation_id = "res_" + hashlib.sha256(order_id.encode()).hexdigest()[:12]
    context.logger.info("reserved %d line(s) for order %s", len(lines), order_id)
    return {"reservationId": reservation_id, "warehouse": "main", "lines": lines}

"""Charges an order's card (a stand-in for a payment provider).

Takes ``{"orderId", "amount", "card"}`` and returns the payment. The card ``declined``
is refused: the handler raises, which fails the workflow's ``charge`` task. The payment id
is derived from the order id, as a real provider's idempotency key would make it: charging
the same order twice gives the same payment.
"""

import hashlib


class CardDeclined(Exception):
    pass


def handler(event, context):
    order_id, amount, card = event["orderId"], event["amount"], event.get("card", "")
    if card == "declined":
        raise CardDeclined(f"card declined for order {order_id}")
    payment_id = "pay_" + hashlib.sha256(order_id.encode()).hexdigest()[:12]
    context.logger.info("charged %.2f for order %s: %s", amount, order_id, payment_id)
    return {"paymentId": payment_id, "amount": amount, "status": "captured"}

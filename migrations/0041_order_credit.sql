-- Paying an order with coupons and shopping credit together (issue 15). The order row
-- keeps what credit pays (locked in the same transaction as its coupons, held in
-- credit_holds under the order's hold id) and how much of it was refunded; pay_cents
-- stays what the order costs after coupons, paid by credit and by other means.
ALTER TABLE coupon_orders
    ADD COLUMN credit_cents bigint NOT NULL DEFAULT 0,
    ADD COLUMN credit_principal_cents bigint NOT NULL DEFAULT 0,
    ADD COLUMN credit_bonus_cents bigint NOT NULL DEFAULT 0,
    ADD COLUMN refunded_credit_cents bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT coupon_orders_credit_within_pay CHECK (credit_cents BETWEEN 0 AND pay_cents),
    ADD CONSTRAINT coupon_orders_credit_split CHECK (credit_principal_cents >= 0
        AND credit_bonus_cents >= 0 AND credit_principal_cents + credit_bonus_cents = credit_cents),
    ADD CONSTRAINT coupon_orders_credit_refund CHECK (refunded_credit_cents BETWEEN 0 AND credit_cents);

-- Each refund records the credit it gave back (the rest of amount_cents is money).
ALTER TABLE coupon_refunds ADD COLUMN credit_cents bigint NOT NULL DEFAULT 0
    CHECK (credit_cents BETWEEN 0 AND amount_cents);

-- Per-item refunds: units refunded so far per cart line (NULL until the first one), and
-- per refund the units it gave back (NULL for a refund by amount).
ALTER TABLE coupon_orders ADD COLUMN refunded_units integer[];
ALTER TABLE coupon_refunds ADD COLUMN units integer[];

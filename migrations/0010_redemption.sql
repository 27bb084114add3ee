-- Using a coupon (issue 9): PostgreSQL is the record of use. Each lock, confirm, cancel,
-- refund, expiry and void is one transaction of conditional updates (never check-then-act)
-- with an audit event per coupon; an order row keyed by (user, orderId) makes every
-- request idempotent.

ALTER TABLE coupons DROP CONSTRAINT coupons_status_check;
ALTER TABLE coupons
    ADD CONSTRAINT coupons_status_check CHECK (status IN
        ('unused', 'locked', 'used', 'expired', 'refunded', 'voided')),
    ADD COLUMN lock_expires_at          timestamptz,
    ADD COLUMN discount_cents           bigint NOT NULL DEFAULT 0 CHECK (discount_cents >= 0),
    ADD COLUMN refunded_discount_cents  bigint NOT NULL DEFAULT 0
        CHECK (refunded_discount_cents BETWEEN 0 AND discount_cents),
    ADD COLUMN expired_at               timestamptz,
    ADD COLUMN voided_at                timestamptz,
    ADD COLUMN void_reason              text,
    -- a discount never exceeds the coupon's value (its cap)
    ADD CONSTRAINT coupons_discount_within_value CHECK (discount_cents <= value_cents),
    ADD CONSTRAINT coupons_locked_has_order CHECK (status <> 'locked' OR
        (order_id IS NOT NULL AND lock_expires_at IS NOT NULL));

-- The sweeper's two questions: which coupons passed their validity, which locks their TTL.
CREATE INDEX coupons_expiring ON coupons (expires_at) WHERE status IN ('unused', 'locked');

-- One row per (user, orderId): what was locked, for how much, and where the order stands.
CREATE TABLE coupon_orders (
    user_id        text NOT NULL,
    order_id       text NOT NULL,
    fingerprint    text NOT NULL,   -- hash of the lock request: a retry must match it
    coupon_ids     uuid[] NOT NULL,
    amount_cents   bigint NOT NULL CHECK (amount_cents > 0),
    discount_cents bigint NOT NULL CHECK (discount_cents BETWEEN 0 AND amount_cents),
    pay_cents      bigint NOT NULL CHECK (pay_cents = amount_cents - discount_cents),
    allocation     jsonb NOT NULL,  -- per coupon, per item: cents (for partial refunds)
    status         text NOT NULL CHECK (status IN
                       ('locked', 'confirmed', 'cancelled', 'expired', 'refunded')),
    refunded_cents bigint NOT NULL DEFAULT 0 CHECK (refunded_cents BETWEEN 0 AND pay_cents),
    locked_at      timestamptz NOT NULL,
    locked_until   timestamptz NOT NULL,
    settled_at     timestamptz,     -- confirmed, cancelled or expired
    PRIMARY KEY (user_id, order_id)
);
CREATE INDEX coupon_orders_due ON coupon_orders (locked_until) WHERE status = 'locked';

-- Refunds of an order, each under its own refundId (a retry answers the same).
CREATE TABLE coupon_refunds (
    user_id        text NOT NULL,
    order_id       text NOT NULL,
    refund_id      text NOT NULL,
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),  -- 0: a free order's refund
    discount_cents bigint NOT NULL CHECK (discount_cents >= 0),
    refunded_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, order_id, refund_id),
    FOREIGN KEY (user_id, order_id) REFERENCES coupon_orders
);

-- The audit trail: one row per coupon per transition, written in the transition's own
-- transaction, so it exists exactly when the transition does.
CREATE TABLE coupon_events (
    event_id       bigserial PRIMARY KEY,
    coupon_id      uuid NOT NULL,
    campaign_id    text NOT NULL,
    user_id        text NOT NULL,
    transition     text NOT NULL CHECK (transition IN ('lock', 'confirm', 'cancel',
                       'lock_expire', 'refund', 'partial_refund', 'expire', 'void', 'persist')),
    from_status    text,
    to_status      text NOT NULL,
    order_id       text,
    amount_cents   bigint,
    discount_cents bigint NOT NULL DEFAULT 0,
    actor          text NOT NULL,   -- user:<id>, sweeper, operator, gateway
    at             timestamptz NOT NULL
);
CREATE INDEX coupon_events_by_coupon ON coupon_events (coupon_id, event_id);
CREATE INDEX coupon_events_by_campaign ON coupon_events (campaign_id, transition);

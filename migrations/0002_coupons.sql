-- Claimed coupons: one row per accepted claim, written by the consumer from Kafka.
-- The primary key absorbs redelivered messages; there is no foreign key on this hot table.
CREATE TABLE coupons (
    coupon_id    uuid PRIMARY KEY,
    campaign_id  text NOT NULL,
    user_id      text NOT NULL,
    device_id    text NOT NULL,
    request_id   text NOT NULL,
    channel      text NOT NULL,
    value_cents  bigint NOT NULL CHECK (value_cents >= 0),
    status       text NOT NULL DEFAULT 'unused' CHECK (status IN
                     ('unused', 'locked', 'used', 'expired', 'refunded')),
    order_id     text,
    claimed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    locked_at    timestamptz,
    used_at      timestamptz,
    refunded_at  timestamptz,
    persisted_at timestamptz NOT NULL DEFAULT now()
);

-- "My coupons" and "coupons of a campaign" (stats, reconciliation, recovery).
CREATE INDEX coupons_by_user ON coupons (user_id, claimed_at DESC);
CREATE INDEX coupons_by_campaign ON coupons (campaign_id, claimed_at);

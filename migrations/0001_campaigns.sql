-- Campaigns (coupon templates): the source of truth, published to Redis before they open.
CREATE TABLE campaigns (
    id                   text PRIMARY KEY,
    name                 text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN
                             ('cash_off', 'percent_off', 'no_threshold', 'free_order',
                              'points_exchange')),
    face_value_cents     bigint NOT NULL DEFAULT 0 CHECK (face_value_cents >= 0),
    threshold_cents      bigint NOT NULL DEFAULT 0 CHECK (threshold_cents >= 0),
    percent_off          integer NOT NULL DEFAULT 0 CHECK (percent_off BETWEEN 0 AND 100),
    max_discount_cents   bigint NOT NULL DEFAULT 0 CHECK (max_discount_cents >= 0),
    points_cost          bigint NOT NULL DEFAULT 0 CHECK (points_cost >= 0),
    stock                bigint NOT NULL CHECK (stock > 0),
    daily_stock          bigint CHECK (daily_stock > 0),
    budget_cents         bigint CHECK (budget_cents > 0),
    per_user_limit       integer NOT NULL CHECK (per_user_limit > 0),
    per_user_daily_limit integer CHECK (per_user_daily_limit > 0),
    per_device_limit     integer CHECK (per_device_limit > 0),
    starts_at            timestamptz NOT NULL,
    ends_at              timestamptz NOT NULL,
    time_zone            text NOT NULL,
    validity             jsonb NOT NULL,
    audience             jsonb NOT NULL,
    exclusion_group      text,
    channels             text[] NOT NULL DEFAULT '{}',
    status               text NOT NULL DEFAULT 'draft' CHECK (status IN
                             ('draft', 'active', 'paused', 'recovering')),
    version              integer NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE INDEX campaigns_by_status ON campaigns (status);

-- Users and devices that may not claim from a campaign.
CREATE TABLE campaign_blocklist (
    campaign_id text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('user', 'device')),
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, kind, value)
);

-- The use side of the statistics (issue 11), kept by PostgreSQL from the audit trail of
-- use (coupon_events, migration 0010): every confirm, refund and partial refund is one
-- INSERT of one event per coupon in the transition's own transaction, so a statement-level
-- trigger on that insert sees each transition exactly once, whoever wrote it. Redemption
-- code is not touched.
--
-- usage_daily: one row per campaign x channel (the coupon's claim channel) x day of use
-- (the confirm's day in the campaign's time zone). A refund subtracts from the day its
-- order was used on, so each day reads "what was used that day, net of what came back".
--   uses           coupons used (a whole refund takes its coupons off)
--   discount_cents the campaign's coupons' discounts, net of the refunded shares
--   orders         orders that used the campaign's coupons (a whole refund takes it off)
--   gmv_cents      those orders' original prices (amount), net of refunds: a refund takes
--                  off what it pays back plus the discount share it gives back
--   paid_cents     what those orders paid (amount - the order's whole discount), net
-- An order with several coupons of one campaign counts once, on the channel of its
-- smallest coupon id, so the channels add up to the campaign.
CREATE TABLE usage_daily (
    campaign_id    text NOT NULL,
    channel        text NOT NULL,
    day            date NOT NULL,
    uses           bigint NOT NULL DEFAULT 0,
    discount_cents bigint NOT NULL DEFAULT 0,
    orders         bigint NOT NULL DEFAULT 0,
    gmv_cents      bigint NOT NULL DEFAULT 0,
    paid_cents     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, channel, day)
);

-- Per campaign and user, net of refunds: coupons used ("coupons per user") and the GMV of
-- the orders that used them (an A/B report's GMV per user).
CREATE TABLE usage_users (
    campaign_id text NOT NULL,
    user_id     text NOT NULL,
    uses        bigint NOT NULL DEFAULT 0,
    gmv_cents   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, user_id)
);

-- Users of a campaign with at least one use, kept from usage_users' changes (a user going
-- from 0 to 1 use adds one, back to 0 takes one off): the report reads one row.
CREATE TABLE usage_campaigns (
    campaign_id text PRIMARY KEY,
    users       bigint NOT NULL DEFAULT 0
);

-- Use per campaign x layer x day of use, as usage_daily per channel (layers: migration 0032).
CREATE TABLE layer_usage_daily (
    campaign_id    text NOT NULL,
    layer          text NOT NULL,
    day            date NOT NULL,
    uses           bigint NOT NULL DEFAULT 0,
    discount_cents bigint NOT NULL DEFAULT 0,
    orders         bigint NOT NULL DEFAULT 0,
    gmv_cents      bigint NOT NULL DEFAULT 0,
    paid_cents     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, layer, day)
);

-- Refused uses per campaign x campaign-zone day x reason (gateway/stats/failures.py writes
-- them: a refused transition rolls back, so it cannot leave its own trace).
CREATE TABLE use_failures (
    campaign_id text NOT NULL,
    day         date NOT NULL,
    reason      text NOT NULL,
    failures    bigint NOT NULL,
    PRIMARY KEY (campaign_id, day, reason)
);

-- The figures of the given events (one transition's rows, or the whole trail once).
CREATE FUNCTION usage_rollup(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH moves (campaign_id, channel, day, user_id, uses, discount, orders, gmv, paid,
                new_user, member_level, tags) AS (
    SELECT n.campaign_id, k.channel,
           (CASE WHEN n.transition = 'confirm' THEN n.at
                 ELSE (SELECT max(e.at) FROM coupon_events e
                       WHERE e.coupon_id = n.coupon_id AND e.order_id = n.order_id
                         AND e.transition = 'confirm')
            END AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date,
           n.user_id,
           CASE WHEN n.transition = 'confirm' THEN 1
                WHEN n.to_status <> 'used' THEN -1 ELSE 0 END,
           CASE WHEN n.transition = 'confirm' THEN n.discount_cents ELSE -n.discount_cents END,
           CASE WHEN NOT n.lead THEN 0 WHEN n.transition = 'confirm' THEN 1
                WHEN n.transition = 'refund' THEN -1 ELSE 0 END,
           CASE WHEN NOT n.lead THEN 0 WHEN n.transition = 'confirm' THEN n.amount_cents
                ELSE -(n.amount_cents + n.order_discount) END,
           CASE WHEN NOT n.lead THEN 0
                WHEN n.transition = 'confirm' THEN n.amount_cents - n.order_discount
                ELSE -n.amount_cents END,
           k.new_user, k.member_level, k.tags
    FROM (
        SELECT e.*,
               row_number() OVER (PARTITION BY e.user_id, e.order_id, e.campaign_id
                                  ORDER BY e.coupon_id) = 1 AS lead,
               sum(e.discount_cents) OVER (PARTITION BY e.user_id, e.order_id) AS order_discount
        FROM coupon_events e
        WHERE e.event_id = ANY(ids)
          AND e.transition IN ('confirm', 'refund', 'partial_refund')
    ) AS n
    JOIN coupons k ON k.coupon_id = n.coupon_id
    LEFT JOIN campaigns c ON c.id = n.campaign_id
    ), daily AS (
    INSERT INTO usage_daily AS d
        (campaign_id, channel, day, uses, discount_cents, orders, gmv_cents, paid_cents)
    SELECT campaign_id, channel, day, sum(uses), sum(discount), sum(orders), sum(gmv),
           sum(paid)
    FROM moves
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3  -- one lock order everywhere: no deadlock
    ON CONFLICT (campaign_id, channel, day) DO UPDATE SET
        uses = d.uses + EXCLUDED.uses,
        discount_cents = d.discount_cents + EXCLUDED.discount_cents,
        orders = d.orders + EXCLUDED.orders,
        gmv_cents = d.gmv_cents + EXCLUDED.gmv_cents,
        paid_cents = d.paid_cents + EXCLUDED.paid_cents
    RETURNING 1
    ), layers AS (
    INSERT INTO layer_usage_daily AS d
        (campaign_id, layer, day, uses, discount_cents, orders, gmv_cents, paid_cents)
    SELECT m.campaign_id, l.layer, m.day, sum(m.uses), sum(m.discount), sum(m.orders),
           sum(m.gmv), sum(m.paid)
    FROM moves m
    CROSS JOIN LATERAL coupon_layers(m.new_user, m.member_level, m.tags) AS l(layer)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (campaign_id, layer, day) DO UPDATE SET
        uses = d.uses + EXCLUDED.uses,
        discount_cents = d.discount_cents + EXCLUDED.discount_cents,
        orders = d.orders + EXCLUDED.orders,
        gmv_cents = d.gmv_cents + EXCLUDED.gmv_cents,
        paid_cents = d.paid_cents + EXCLUDED.paid_cents
    RETURNING 1
    ), deltas AS (
    SELECT campaign_id, user_id, sum(uses) AS uses, sum(gmv) AS gmv
    FROM moves
    GROUP BY 1, 2
    HAVING sum(uses) <> 0 OR sum(gmv) <> 0
    ), users AS (
    INSERT INTO usage_users AS u (campaign_id, user_id, uses, gmv_cents)
    SELECT campaign_id, user_id, uses, gmv FROM deltas
    ORDER BY 1, 2
    ON CONFLICT (campaign_id, user_id) DO UPDATE SET
        uses = u.uses + EXCLUDED.uses,
        gmv_cents = u.gmv_cents + EXCLUDED.gmv_cents
    RETURNING u.campaign_id, u.user_id, u.uses  -- each row as its own upsert left it
    )
    INSERT INTO usage_campaigns AS c (campaign_id, users)
    SELECT u.campaign_id, sum((u.uses > 0)::int - (u.uses - d.uses > 0)::int)
    FROM users u JOIN deltas d ON d.campaign_id = u.campaign_id AND d.user_id = u.user_id
    GROUP BY 1
    ORDER BY 1
    ON CONFLICT (campaign_id) DO UPDATE SET users = c.users + EXCLUDED.users;
END $$;

CREATE FUNCTION usage_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := ARRAY(SELECT event_id FROM new_events
                          WHERE transition IN ('confirm', 'refund', 'partial_refund'));
BEGIN
    IF cardinality(ids) > 0 THEN  -- locks, cancels, expiries: nothing to add
        PERFORM usage_rollup(ids);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_daily_insert AFTER INSERT ON coupon_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_add();

-- Uses recorded before this migration.
SELECT usage_rollup(ARRAY(SELECT event_id FROM coupon_events));

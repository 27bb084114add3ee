-- The claim side of the funnel, kept by PostgreSQL itself: one row per campaign x channel x
-- campaign-zone day of claim, updated by statement-level triggers on coupons. A statement's
-- transition table holds only the rows it really inserted, so a redelivered claim (absorbed
-- by ON CONFLICT DO NOTHING) adds nothing; status changes (used, refunded, expired) move
-- their counts. One upsert per group per statement: the consumer's batch of 1,000 claims
-- costs one or a few row updates. Reading the funnel then never scans coupons.
CREATE TABLE coupon_daily (
    campaign_id      text NOT NULL,
    channel          text NOT NULL,
    day              date NOT NULL,
    claims           bigint NOT NULL DEFAULT 0,
    value_cents      bigint NOT NULL DEFAULT 0,  -- what the claims drew from the budget
    used             bigint NOT NULL DEFAULT 0,  -- coupons now in status 'used'
    used_value_cents bigint NOT NULL DEFAULT 0,
    refunded         bigint NOT NULL DEFAULT 0,
    expired          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, channel, day)
);

CREATE FUNCTION coupon_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO coupon_daily AS d
        (campaign_id, channel, day, claims, value_cents, used, used_value_cents, refunded,
         expired)
    SELECT n.campaign_id, n.channel,
           (n.claimed_at AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date,
           count(*), sum(n.value_cents),
           count(*) FILTER (WHERE n.status = 'used'),
           coalesce(sum(n.value_cents) FILTER (WHERE n.status = 'used'), 0),
           count(*) FILTER (WHERE n.status = 'refunded'),
           count(*) FILTER (WHERE n.status = 'expired')
    FROM new_rows n LEFT JOIN campaigns c ON c.id = n.campaign_id
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3  -- the same lock order in every transaction: no deadlock
    ON CONFLICT (campaign_id, channel, day) DO UPDATE SET
        claims = d.claims + EXCLUDED.claims,
        value_cents = d.value_cents + EXCLUDED.value_cents,
        used = d.used + EXCLUDED.used,
        used_value_cents = d.used_value_cents + EXCLUDED.used_value_cents,
        refunded = d.refunded + EXCLUDED.refunded,
        expired = d.expired + EXCLUDED.expired;
    RETURN NULL;
END $$;

CREATE FUNCTION coupon_daily_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO coupon_daily AS d
        (campaign_id, channel, day, used, used_value_cents, refunded, expired)
    SELECT campaign_id, channel, day, sum(used), sum(used_value_cents), sum(refunded),
           sum(expired)
    FROM (
        SELECT n.campaign_id, n.channel,
               (n.claimed_at AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date AS day,
               (n.status = 'used')::int - (o.status = 'used')::int AS used,
               CASE WHEN n.status = 'used' THEN n.value_cents ELSE 0 END
                 - CASE WHEN o.status = 'used' THEN o.value_cents ELSE 0 END
                 AS used_value_cents,
               (n.status = 'refunded')::int - (o.status = 'refunded')::int AS refunded,
               (n.status = 'expired')::int - (o.status = 'expired')::int AS expired
        FROM new_rows n
        JOIN old_rows o ON o.coupon_id = n.coupon_id
        LEFT JOIN campaigns c ON c.id = n.campaign_id
        WHERE n.status IS DISTINCT FROM o.status OR n.value_cents <> o.value_cents
    ) AS moved
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (campaign_id, channel, day) DO UPDATE SET
        used = d.used + EXCLUDED.used,
        used_value_cents = d.used_value_cents + EXCLUDED.used_value_cents,
        refunded = d.refunded + EXCLUDED.refunded,
        expired = d.expired + EXCLUDED.expired;
    RETURN NULL;
END $$;

CREATE FUNCTION coupon_daily_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE coupon_daily;
    RETURN NULL;
END $$;

CREATE TRIGGER coupon_daily_insert AFTER INSERT ON coupons
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION coupon_daily_add();
CREATE TRIGGER coupon_daily_update AFTER UPDATE ON coupons
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION coupon_daily_move();
CREATE TRIGGER coupon_daily_truncate AFTER TRUNCATE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupon_daily_clear();

-- Claims stored before this migration.
INSERT INTO coupon_daily
    (campaign_id, channel, day, claims, value_cents, used, used_value_cents, refunded, expired)
SELECT k.campaign_id, k.channel,
       (k.claimed_at AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date,
       count(*), sum(k.value_cents),
       count(*) FILTER (WHERE k.status = 'used'),
       coalesce(sum(k.value_cents) FILTER (WHERE k.status = 'used'), 0),
       count(*) FILTER (WHERE k.status = 'refunded'),
       count(*) FILTER (WHERE k.status = 'expired')
FROM coupons k LEFT JOIN campaigns c ON c.id = k.campaign_id
GROUP BY 1, 2, 3;

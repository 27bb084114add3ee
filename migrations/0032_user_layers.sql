-- User layers (issue 11): the claimant's facts as its token stated them at claim time,
-- carried by the claim event (claim.lua's outbox entry) to the coupon row, and the funnel
-- per layer kept by triggers as migration 0031 keeps coupon_daily (use per layer: 0033). NULL: not known
-- (claims stored before this migration, or written through by a lock before the consumer
-- stored them from the outbox entry).
ALTER TABLE coupons
    ADD COLUMN new_user     boolean,
    ADD COLUMN member_level integer,
    ADD COLUMN tags         text[];

-- A coupon's layers: 'new' or 'returning', 'level:<n>', and 'tag:<t>' per tag.
CREATE FUNCTION coupon_layers(new_user boolean, member_level integer, tags text[])
RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE new_user WHEN true THEN 'new' WHEN false THEN 'returning' END
    WHERE new_user IS NOT NULL
    UNION ALL SELECT 'level:' || member_level WHERE member_level IS NOT NULL
    UNION ALL SELECT 'tag:' || t FROM unnest(coalesce(tags, '{}')) AS t
$$;

-- Claims per campaign x layer x claim day (campaign zone), and those now used.
CREATE TABLE layer_daily (
    campaign_id      text NOT NULL,
    layer            text NOT NULL,
    day              date NOT NULL,
    claims           bigint NOT NULL DEFAULT 0,
    used             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, layer, day)
);

CREATE FUNCTION layer_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO layer_daily AS d (campaign_id, layer, day, claims, used)
    SELECT n.campaign_id, l.layer,
           (n.claimed_at AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date,
           count(*), count(*) FILTER (WHERE n.status = 'used')
    FROM new_rows n
    CROSS JOIN LATERAL coupon_layers(n.new_user, n.member_level, n.tags) AS l(layer)
    LEFT JOIN campaigns c ON c.id = n.campaign_id
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (campaign_id, layer, day) DO UPDATE SET
        claims = d.claims + EXCLUDED.claims, used = d.used + EXCLUDED.used;
    RETURN NULL;
END $$;

CREATE FUNCTION layer_daily_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO layer_daily AS d (campaign_id, layer, day, used)
    SELECT n.campaign_id, l.layer,
           (n.claimed_at AT TIME ZONE coalesce(c.spec->>'timeZone', 'UTC'))::date,
           sum((n.status = 'used')::int - (o.status = 'used')::int)
    FROM new_rows n
    JOIN old_rows o ON o.coupon_id = n.coupon_id
    CROSS JOIN LATERAL coupon_layers(n.new_user, n.member_level, n.tags) AS l(layer)
    LEFT JOIN campaigns c ON c.id = n.campaign_id
    WHERE (n.status = 'used') <> (o.status = 'used')
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (campaign_id, layer, day) DO UPDATE SET used = d.used + EXCLUDED.used;
    RETURN NULL;
END $$;

CREATE FUNCTION layer_daily_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE layer_daily;
    RETURN NULL;
END $$;

CREATE TRIGGER layer_daily_insert AFTER INSERT ON coupons
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION layer_daily_add();
CREATE TRIGGER layer_daily_update AFTER UPDATE ON coupons
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION layer_daily_move();
CREATE TRIGGER layer_daily_truncate AFTER TRUNCATE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION layer_daily_clear();

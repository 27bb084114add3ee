-- Voiding a campaign's coupons (作废 / 提前终止, issue 9) reaches coupons not stored yet.
-- A claim is answered before its row exists (the outbox, Kafka, the consumer), so a void
-- of the rows alone would miss the coupons on their way. The void leaves a mark: coupons
-- of the campaign claimed by the void's instant and still valid then arrive voided, with
-- their audit event, whichever path stores them (the consumer's COPY, its older unnest
-- insert, a lock's write-through), in the inserting statement itself.
CREATE TABLE campaign_voids (
    campaign_id text PRIMARY KEY,
    reason      text NOT NULL,
    voided_at   timestamptz NOT NULL
);

-- After each INSERT into coupons: one pass over the rows it stored. The shared advisory
-- lock per campaign pairs with the exclusive one a campaign void takes before it marks
-- and updates: a void waits for inserting transactions to commit (then its UPDATE sees
-- their rows), and an insert racing a void waits for it (then this reads its mark).
CREATE FUNCTION coupon_arrival_void() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('campaign-void:' || campaign_id))
    FROM (SELECT DISTINCT campaign_id FROM arrived ORDER BY campaign_id) AS campaigns;
    WITH voided AS (
        UPDATE coupons c SET status = 'voided', voided_at = v.voided_at, void_reason = v.reason
        FROM arrived a JOIN campaign_voids v ON v.campaign_id = a.campaign_id
        WHERE c.coupon_id = a.coupon_id AND c.status = 'unused'
          AND a.claimed_at <= v.voided_at AND a.expires_at > v.voided_at
        RETURNING c.coupon_id, c.campaign_id, c.user_id, v.voided_at
    )
    INSERT INTO coupon_events (coupon_id, campaign_id, user_id, transition, from_status,
                               to_status, actor, at)
    SELECT coupon_id, campaign_id, user_id, 'void', 'unused', 'voided', 'operator', voided_at
    FROM voided ORDER BY coupon_id;
    RETURN NULL;
END $$;

-- Named to fire first of the AFTER INSERT triggers (PostgreSQL runs them in name order):
-- an insert waits for a running void before it takes any other lock (coupon_daily's rows
-- among them, which the void's own UPDATE needs: waiting after them deadlocked).
CREATE TRIGGER coupon_arrival_void AFTER INSERT ON coupons
    REFERENCING NEW TABLE AS arrived
    FOR EACH STATEMENT EXECUTE FUNCTION coupon_arrival_void();

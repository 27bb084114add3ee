-- Abuse trends for the health report (issue 11): claims refused BLOCKED, DEVICE_LIMIT,
-- RATE_LIMITED and redeem-code guessing (CODE_INVALID, CODE_MISTYPED, CODE_LOCKED), per
-- campaign ('' for code refusals, which name no campaign) x UTC hour x reason. Workers tally
-- in memory and add to Redis every few seconds; the reconciler's round copies the hours
-- here, overwriting (never adding), so copying twice counts nothing twice. Hours, not days:
-- the report folds them into the campaign's own days.
CREATE TABLE abuse_hourly (
    campaign_id text NOT NULL,
    hour        timestamptz NOT NULL,
    reason      text NOT NULL,
    refusals    bigint NOT NULL CHECK (refusals >= 0),
    PRIMARY KEY (campaign_id, hour, reason)
);

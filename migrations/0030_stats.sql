-- Statistics (gateway/stats/). Exposures rolled up from Redis, one row per campaign x
-- channel x campaign-zone day; channel '*' holds the campaign's figures over all channels
-- (unique viewers cannot be added up across channels). Rows are overwritten, never added
-- to, by each rollup: running it twice counts nothing twice.
CREATE TABLE exposure_daily (
    campaign_id    text NOT NULL,
    channel        text NOT NULL,
    day            date NOT NULL,
    views          bigint NOT NULL CHECK (views >= 0),
    unique_viewers bigint NOT NULL CHECK (unique_viewers >= 0),
    rolled_up_at   timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, channel, day)
);

-- A/B experiments: a set of campaign variants with weights; a user's variant is a hash of
-- (experiment, user) (gateway/stats/bucketing.py). Promoting a variant sends everyone to it.
CREATE TABLE experiments (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    variants    jsonb NOT NULL,
    promoted    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    promoted_at timestamptz
);

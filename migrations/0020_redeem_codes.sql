-- Redeem codes (gateway/channels/): only keyed hashes are kept, never the codes. Redis holds
-- the live state (claim.lua marks a code redeemed in the claim's own step); these rows are
-- the record of what was generated, per batch, to rebuild Redis and to audit.
CREATE TABLE code_batches (
    batch_id     text PRIMARY KEY,
    campaign_id  text NOT NULL REFERENCES campaigns (id),
    count        integer NOT NULL CHECK (count > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE redeem_codes (
    code_hash    text PRIMARY KEY,
    campaign_id  text NOT NULL,
    batch_id     text NOT NULL REFERENCES code_batches (batch_id)
);
CREATE INDEX redeem_codes_campaign ON redeem_codes (campaign_id);

-- Redeem codes (gateway/channels/): only keyed hashes are kept, never the codes. Redis holds
-- the live state (claim.lua marks a code redeemed in the claim's own step); a batch's row is
-- the record of what was generated: its hashes, 16 bytes each, one after another (a
-- million codes are one 16 MB value, written at once, rather than a million rows).
CREATE TABLE code_batches (
    batch_id     text PRIMARY KEY,
    campaign_id  text NOT NULL REFERENCES campaigns (id),
    count        integer NOT NULL CHECK (count > 0),
    hashes       bytea NOT NULL CHECK (length(hashes) = 16 * count),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Redeem codes' recovery (gateway/channels/, gateway/ops/recover.py): the keyed hash of the
-- redeem code a coupon was claimed with, NULL for a coupon from any other channel. Redis
-- holds a code's live state; after Redis lost data, `flashclaim recover` marks used again
-- every code a stored coupon names (the unused ones come back from code_batches), so a used
-- code cannot redeem twice. Nullable without a default: adding it rewrites no rows.
ALTER TABLE coupons ADD COLUMN code_hash text;

-- Campaigns keep the operator's spec as one JSON document (camelCase, as the admin API
-- and CLI take it), validated by gateway/campaigns/spec.py before it is stored. New rules
-- on a campaign then need no schema change; what SQL filters or updates on stays a column.
ALTER TABLE campaigns ADD COLUMN spec jsonb;

UPDATE campaigns SET spec = jsonb_strip_nulls(jsonb_build_object(
    'id', id,
    'name', name,
    'kind', kind,
    'faceValueCents', face_value_cents,
    'thresholdCents', threshold_cents,
    'percentOff', percent_off,
    'maxDiscountCents', max_discount_cents,
    'pointsCost', points_cost,
    'stock', stock,
    'dailyStock', daily_stock,
    'budgetCents', budget_cents,
    'perUserLimit', per_user_limit,
    'perUserDailyLimit', per_user_daily_limit,
    'perDeviceLimit', per_device_limit,
    'startsAt', starts_at,
    'endsAt', ends_at,
    'timeZone', time_zone,
    'validity', validity,
    'audience', audience,
    'exclusionGroup', exclusion_group,
    'channels', to_jsonb(channels)
));

ALTER TABLE campaigns
    ALTER COLUMN spec SET NOT NULL,
    ADD CHECK (spec->>'id' = id),
    DROP COLUMN name,
    DROP COLUMN kind,
    DROP COLUMN face_value_cents,
    DROP COLUMN threshold_cents,
    DROP COLUMN percent_off,
    DROP COLUMN max_discount_cents,
    DROP COLUMN points_cost,
    DROP COLUMN stock,
    DROP COLUMN daily_stock,
    DROP COLUMN budget_cents,
    DROP COLUMN per_user_limit,
    DROP COLUMN per_user_daily_limit,
    DROP COLUMN per_device_limit,
    DROP COLUMN starts_at,
    DROP COLUMN ends_at,
    DROP COLUMN time_zone,
    DROP COLUMN validity,
    DROP COLUMN audience,
    DROP COLUMN exclusion_group,
    DROP COLUMN channels;

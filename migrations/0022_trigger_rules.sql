-- Automatic triggers (gateway/channels/triggers.py): "on event X matching conditions,
-- grant campaign Y" and sky-drop rules (a campaign that may fall on app open, with a
-- probability and a "first N opens" cap).
CREATE TABLE trigger_rules (
    rule_id      text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('event', 'skydrop')),
    event_type   text NOT NULL DEFAULT '',
    campaign_id  text NOT NULL,
    conditions   jsonb NOT NULL DEFAULT '{}',
    probability  double precision NOT NULL DEFAULT 1 CHECK (probability >= 0 AND probability <= 1),
    first_opens  integer NOT NULL DEFAULT 0 CHECK (first_opens >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

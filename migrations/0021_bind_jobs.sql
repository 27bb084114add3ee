-- Bulk bind jobs (gateway/channels/bind.py): a job's progress and checkpoint. The
-- checkpoint is the input's byte offset and the report's byte offset after the last
-- batch whose every claim was decided; a resumed job starts there, and claims it decides
-- again are replays (their requestId derives from job and user), never second coupons.
CREATE TABLE bind_jobs (
    job_id         text PRIMARY KEY,
    campaign_id    text NOT NULL,
    source         text NOT NULL,
    total          bigint NOT NULL DEFAULT 0,
    done           bigint NOT NULL DEFAULT 0,
    input_offset   bigint NOT NULL DEFAULT 0,
    report_offset  bigint NOT NULL DEFAULT 0,
    reasons        jsonb NOT NULL DEFAULT '{}',
    status         text NOT NULL DEFAULT 'running',
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

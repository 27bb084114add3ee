-- Shopping credit (购物金): plans, a double-entry ledger, top-up orders, holds for orders.
-- Money is integer cents. Every movement is one entry in credit_entries with an
-- idempotency key (UNIQUE) and lines in credit_lines that sum to zero (checked at commit
-- by a deferred constraint trigger). A user's accounts never go below zero (CHECK);
-- system accounts are the other side of every movement and may (payments, promotions).

-- Operators' top-up rules, one JSON spec each (validated by gateway/credit/plan.py).
CREATE TABLE credit_plans (
    id          text PRIMARY KEY,
    spec        jsonb NOT NULL CHECK (spec->>'id' = id),
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- kind: principal (paid money), bonus (one bucket per grant, with its expiry), held (one
-- per order: credit locked for it), system (the other side: payments, promotions, sales,
-- withdrawals, expired, forfeited).
CREATE TABLE credit_accounts (
    account_id    bigserial PRIMARY KEY,
    owner         text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('principal', 'bonus', 'held', 'system')),
    bucket        text NOT NULL DEFAULT '',
    expires_at    timestamptz,
    balance_cents bigint NOT NULL DEFAULT 0,
    CHECK (kind = 'system' OR balance_cents >= 0),
    CHECK ((kind = 'bonus') = (expires_at IS NOT NULL)),
    UNIQUE (owner, kind, bucket)
);
-- The system accounts, at fixed ids (gateway/credit/journal.py SYSTEM_ACCOUNTS).
INSERT INTO credit_accounts (account_id, owner, kind, bucket) VALUES
    (1, 'system', 'system', 'payments'), (2, 'system', 'system', 'promotions'),
    (3, 'system', 'system', 'sales'), (4, 'system', 'system', 'withdrawals'),
    (5, 'system', 'system', 'expired'), (6, 'system', 'system', 'forfeited');
SELECT setval('credit_accounts_account_id_seq', 1000);
CREATE INDEX credit_bonus_expiry ON credit_accounts (expires_at)
    WHERE kind = 'bonus' AND balance_cents > 0;

CREATE TABLE credit_entries (
    entry_id    bigserial PRIMARY KEY,
    idem_key    text NOT NULL UNIQUE,
    user_id     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('topup', 'grant', 'lock', 'confirm', 'cancel',
                                              'refund', 'withdraw', 'expire')),
    order_id    text,
    principal_cents bigint NOT NULL DEFAULT 0,  -- the user's principal moved (signed)
    bonus_cents     bigint NOT NULL DEFAULT 0,  -- the user's bonus moved (signed)
    request     jsonb NOT NULL DEFAULT '{}',    -- what was asked: a replay must match it
    created_at  timestamptz NOT NULL
);
CREATE INDEX credit_entries_by_user ON credit_entries (user_id, entry_id DESC);

CREATE TABLE credit_lines (
    entry_id     bigint NOT NULL REFERENCES credit_entries (entry_id),
    account_id   bigint NOT NULL REFERENCES credit_accounts (account_id),
    amount_cents bigint NOT NULL CHECK (amount_cents <> 0),
    PRIMARY KEY (entry_id, account_id)
);
CREATE INDEX credit_lines_by_account ON credit_lines (account_id);

-- Each entry's lines sum to zero, checked when its transaction commits.
CREATE FUNCTION credit_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
    SELECT COALESCE(sum(amount_cents), 0) INTO total
        FROM credit_lines WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'credit entry % is unbalanced by % cents', NEW.entry_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER credit_lines_balanced AFTER INSERT OR UPDATE ON credit_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credit_entry_balanced();

-- Top-up orders: created by the user, counted only when the payment callback arrives.
CREATE TABLE credit_topups (
    topup_id        text PRIMARY KEY,
    user_id         text NOT NULL,
    plan_id         text NOT NULL REFERENCES credit_plans (id),
    pay_cents       bigint NOT NULL CHECK (pay_cents > 0),
    bonus_cents     bigint NOT NULL CHECK (bonus_cents >= 0),
    gift_cents      bigint NOT NULL DEFAULT 0 CHECK (gift_cents >= 0),
    level           integer NOT NULL DEFAULT 0,
    new_user        boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
    payment_id      text UNIQUE,
    created_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    CHECK ((status = 'paid') = (payment_id IS NOT NULL))
);
CREATE INDEX credit_topups_by_user ON credit_topups (user_id, created_at DESC);

-- Credit locked for an order, and where each cent came from (refunds return it there).
CREATE TABLE credit_holds (
    order_id     text PRIMARY KEY,
    user_id      text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    status       text NOT NULL CHECK (status IN ('locked', 'confirmed', 'cancelled')),
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    refunded_cents bigint NOT NULL DEFAULT 0 CHECK (refunded_cents BETWEEN 0 AND amount_cents)
);
CREATE INDEX credit_holds_expiry ON credit_holds (expires_at) WHERE status = 'locked';

CREATE TABLE credit_hold_parts (
    order_id       text NOT NULL REFERENCES credit_holds (order_id),
    account_id     bigint NOT NULL REFERENCES credit_accounts (account_id),
    amount_cents   bigint NOT NULL CHECK (amount_cents > 0),
    refunded_cents bigint NOT NULL DEFAULT 0 CHECK (refunded_cents BETWEEN 0 AND amount_cents),
    PRIMARY KEY (order_id, account_id)
);

-- Reminders and expiries, once each: what a notifier sends (the same events as coupons').
CREATE TABLE credit_events (
    event_id    bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('bonus_expiring', 'bonus_expired')),
    user_id     text NOT NULL,
    account_id  bigint NOT NULL REFERENCES credit_accounts (account_id),
    amount_cents bigint NOT NULL,
    due_at      timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (kind, account_id, due_at)
);

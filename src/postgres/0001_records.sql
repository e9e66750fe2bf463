-- Concierge's record store, version 1: every instance's records and checkpoints, append-only.
-- A record row keeps the line exactly as the instance wrote it (its hash is over these bytes) beside the columns
-- the readers search by; the line is the truth, the columns are for indexes.

CREATE TABLE concierge_instance (
    instance      text PRIMARY KEY,
    -- The instance's checkpoint key (`ed25519 <base64>`), registered by an operator: central verification
    -- trusts this, never a key a row names.
    public_key    text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE concierge_record (
    instance   text NOT NULL,
    stream     text NOT NULL,
    seq        bigint NOT NULL,
    time       timestamptz NOT NULL,
    type       text NOT NULL,
    line       text NOT NULL,
    hash       text NOT NULL,
    prev       text NOT NULL,
    request_id text,
    consent_id text,
    company    text,
    experiment text,
    body       jsonb NOT NULL,
    -- (instance, stream, seq) is the key a resend is idempotent on; `time` is part of it because the table is
    -- partitioned by time (a record's time is in its line, so a resend lands in the same partition).
    PRIMARY KEY (instance, stream, seq, time)
) PARTITION BY RANGE (time);

-- Rows outside every monthly partition (the shipper creates those ahead) land here.
CREATE TABLE concierge_record_default PARTITION OF concierge_record DEFAULT;

CREATE INDEX concierge_record_request ON concierge_record (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX concierge_record_consent ON concierge_record (consent_id) WHERE consent_id IS NOT NULL;
CREATE INDEX concierge_record_company ON concierge_record (company, time) WHERE company IS NOT NULL;
CREATE INDEX concierge_record_experiment ON concierge_record (experiment, time) WHERE experiment IS NOT NULL;
CREATE INDEX concierge_record_time ON concierge_record (time, type);

CREATE TABLE concierge_checkpoint (
    instance text NOT NULL,
    stream   text NOT NULL,
    seq      bigint NOT NULL,
    -- The checkpoint line exactly as written; verification re-checks its signature against the registered key.
    line     text NOT NULL,
    PRIMARY KEY (instance, stream, seq)
);

-- Append-only: no row is updated or deleted, no table truncated. Retention drops whole partitions (DDL, for
-- the table's owner), which no row trigger sees. Verification is the guarantee; this refuses the accident.
CREATE FUNCTION concierge_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'concierge: % on % refused: records are append-only (retention drops whole partitions)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER concierge_record_append_only BEFORE UPDATE OR DELETE ON concierge_record
    FOR EACH ROW EXECUTE FUNCTION concierge_append_only();
CREATE TRIGGER concierge_record_no_truncate BEFORE TRUNCATE ON concierge_record
    FOR EACH STATEMENT EXECUTE FUNCTION concierge_append_only();
-- TRUNCATE triggers are per table, not inherited by partitions: every partition gets its own.
CREATE TRIGGER concierge_record_default_no_truncate BEFORE TRUNCATE ON concierge_record_default
    FOR EACH STATEMENT EXECUTE FUNCTION concierge_append_only();
CREATE TRIGGER concierge_checkpoint_append_only BEFORE UPDATE OR DELETE ON concierge_checkpoint
    FOR EACH ROW EXECUTE FUNCTION concierge_append_only();
CREATE TRIGGER concierge_checkpoint_no_truncate BEFORE TRUNCATE ON concierge_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION concierge_append_only();

-- The month's partition holding `at` (created with its TRUNCATE guard if missing); returns its name.
CREATE FUNCTION concierge_partition(at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    first timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name  text := 'concierge_record_' || to_char(first AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF concierge_record FOR VALUES FROM (%L) TO (%L)',
            name, first, first + interval '1 month');
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION concierge_append_only()',
            name || '_no_truncate', name);
    END IF;
    RETURN name;
END
$$;

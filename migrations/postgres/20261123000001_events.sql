-- The append-only event log. Writers take a transaction-scoped advisory lock before reading
-- the head, so positions are assigned and committed strictly in order across all nodes.
CREATE TABLE events (
    position       BIGINT  PRIMARY KEY,
    event_id       UUID    NOT NULL UNIQUE,
    stream_type    TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    version        BIGINT  NOT NULL,
    recorded_at_us BIGINT  NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    prev_hash      BYTEA   NOT NULL,
    hash           BYTEA   NOT NULL,
    UNIQUE (stream_id, stream_type, version)
);

CREATE FUNCTION annals_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION annals_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION annals_events_append_only();

CREATE TABLE snapshots (
    stream_type TEXT   NOT NULL,
    stream_id   TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    state       TEXT   NOT NULL,
    PRIMARY KEY (stream_type, stream_id, version)
);

CREATE TABLE checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

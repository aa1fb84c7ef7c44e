-- SQL read model `user_search`: admin user search. Rebuilt by `annals projections rebuild
-- user_search`; its checkpoint row in `checkpoints` is written in the same transaction.
CREATE TABLE rm_user_search (
    user_id    TEXT    PRIMARY KEY,
    realm_id   TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    email      TEXT,
    first_name TEXT,
    last_name  TEXT,
    enabled    BOOLEAN NOT NULL,
    created_ms BIGINT  NOT NULL
);
CREATE INDEX rm_user_search_realm_username ON rm_user_search (realm_id, username);

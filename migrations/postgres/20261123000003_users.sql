-- SQL read model `users`: users, their direct role grants and their group memberships. It
-- replaces `user_search` (a subset of its columns). Rebuilt by `annals projections rebuild
-- users`; its checkpoint row in `checkpoints` is written in the same transaction as its rows.
-- Keys (`username_key`, `email_key`, `search`) are lowercased by the server, not by SQL,
-- because SQLite's lower() only folds ASCII.
DROP TABLE rm_user_search;
DELETE FROM checkpoints WHERE name = 'user_search';

CREATE TABLE rm_users (
    user_id            TEXT    PRIMARY KEY,
    realm_id           TEXT    NOT NULL,
    username           TEXT    NOT NULL,
    username_key       TEXT    NOT NULL,
    email_key          TEXT,
    -- username_key, then email, first and last name, lowercased and separated by U+001F
    search             TEXT    NOT NULL,
    -- log position of the creation: among users sharing a username the first created wins
    position           BIGINT  NOT NULL,
    created_ms         BIGINT  NOT NULL,
    federation_link    TEXT,
    profile            TEXT    NOT NULL,
    password           TEXT,
    password_temporary BOOLEAN NOT NULL,
    extra              TEXT    NOT NULL
);
-- Not unique: a username is checked for uniqueness before its user is created, but
-- a read model must never refuse an event the log holds.
CREATE INDEX rm_users_username ON rm_users (realm_id, username_key, position);
CREATE INDEX rm_users_email ON rm_users (realm_id, email_key);

CREATE TABLE rm_user_roles (
    user_id TEXT NOT NULL,
    role_id TEXT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX rm_user_roles_role ON rm_user_roles (role_id);

CREATE TABLE rm_user_groups (
    user_id  TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX rm_user_groups_group ON rm_user_groups (group_id);

-- kurir schema 3: groups (issue 6). Portable SQL (SQLite and PostgreSQL), keyed by group id,
-- then account id. The avatar is opaque bytes; the server never interprets it.

CREATE TABLE chat_groups (
    group_id   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    avatar     BLOB,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    joined_at   BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    archived    INTEGER NOT NULL DEFAULT 0,
    muted_until BIGINT NOT NULL DEFAULT 0,
    sound       TEXT,
    PRIMARY KEY (group_id, account_id)
);

CREATE INDEX group_members_by_account ON group_members (account_id, group_id);

-- kurir schema 4: the metadata features (issue 5): settings, profile pictures, blocks,
-- conversations (state, flags, counts), the uploaded address book, push subscriptions.
-- Numbered 0004: 0002 is the device counter and 0003 is groups (issue 6).
-- Portable SQL (SQLite and PostgreSQL); every table is keyed by the owning account id first.
-- docs/metadata.md lists every column; the transparency report returns them all.

CREATE TABLE account_settings (
    account_id           TEXT PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    reachability         TEXT NOT NULL,
    default_sound        TEXT NOT NULL,
    default_muted        INTEGER NOT NULL,
    unarchive_on_message INTEGER NOT NULL,
    display_name         TEXT,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE avatars (
    account_id   TEXT PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    data         BLOB NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE blocks (
    account_id      TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    blocked_account TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (account_id, blocked_account)
);

CREATE TABLE conversations (
    account_id     TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    peer_account   TEXT NOT NULL,
    state          TEXT NOT NULL,
    archived       INTEGER NOT NULL DEFAULT 0,
    muted          INTEGER,
    sound          TEXT,
    sent_count     BIGINT NOT NULL DEFAULT 0,
    received_count BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    last_activity  BIGINT NOT NULL,
    PRIMARY KEY (account_id, peer_account)
);

CREATE TABLE contacts (
    account_id TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    entry      TEXT NOT NULL,
    position   INTEGER NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, entry)
);

CREATE TABLE push_subscriptions (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

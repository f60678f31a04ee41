-- kurir schema 4 (PostgreSQL): the metadata features (issue 5): settings, profile pictures,
-- blocks, conversations (state, flags, counts), the uploaded address book, push
-- subscriptions. Mirrors migrations/0004_metadata.sql. Every table is keyed by the owning
-- account id first (Citus distribution column, co-located with accounts).

CREATE TABLE account_settings (
    account_id           uuid PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    reachability         text NOT NULL,
    default_sound        text NOT NULL,
    default_muted        integer NOT NULL,
    unarchive_on_message integer NOT NULL,
    display_name         text,
    updated_at           bigint NOT NULL
);

CREATE TABLE avatars (
    account_id   uuid PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    content_type text NOT NULL,
    data         bytea NOT NULL,
    updated_at   bigint NOT NULL
);

CREATE TABLE blocks (
    account_id      uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    blocked_account uuid NOT NULL,
    created_at      bigint NOT NULL,
    PRIMARY KEY (account_id, blocked_account)
);

CREATE TABLE conversations (
    account_id     uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    peer_account   uuid NOT NULL,
    state          text NOT NULL,
    archived       integer NOT NULL DEFAULT 0,
    muted          integer,
    sound          text,
    sent_count     bigint NOT NULL DEFAULT 0,
    received_count bigint NOT NULL DEFAULT 0,
    created_at     bigint NOT NULL,
    last_activity  bigint NOT NULL,
    PRIMARY KEY (account_id, peer_account)
);

CREATE TABLE contacts (
    account_id uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    entry      text NOT NULL,
    position   integer NOT NULL,
    added_at   bigint NOT NULL,
    PRIMARY KEY (account_id, entry)
);

CREATE TABLE push_subscriptions (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    endpoint   text NOT NULL,
    p256dh     text NOT NULL,
    auth       text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

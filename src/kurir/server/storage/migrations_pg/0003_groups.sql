-- kurir schema 3 (PostgreSQL): groups (issue 6). Mirrors migrations/0003_groups.sql.
--
-- Sharding (Citus): chat_groups and group_members are distributed by group_id (co-located),
-- so a group's fan-out reads one shard. group_members has no foreign key to accounts because
-- the two are distributed differently (accounts by account_id); accounts are never deleted
-- (re-registration keeps the id), so nothing dangles.

CREATE TABLE chat_groups (
    group_id   uuid PRIMARY KEY,
    name       text NOT NULL,
    avatar     bytea,
    revision   bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE group_members (
    group_id    uuid NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    account_id  uuid NOT NULL,
    role        text NOT NULL,
    joined_at   bigint NOT NULL,
    position    bigint NOT NULL,
    archived    integer NOT NULL DEFAULT 0,
    muted_until bigint NOT NULL DEFAULT 0,
    sound       text,
    PRIMARY KEY (group_id, account_id)
);

CREATE INDEX group_members_by_account ON group_members (account_id, group_id);

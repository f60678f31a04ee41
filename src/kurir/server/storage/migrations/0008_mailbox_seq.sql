-- kurir schema 8 (SQLite only; the message hot path): each device's mailbox sequence counter
-- moves out of its devices row into a narrow table of its own, clustered on the device key.
-- Every envelope insert read the counter and advanced it (the trigger below): two descents
-- into devices each time (its primary-key index, then the wide row: name, salt, password
-- hash) and a rewrite of that row. Now it is one descent into a table whose rows are a key
-- and a number, so the counters of all devices share a few pages.
-- Triggers on devices keep exactly one counter per device, whatever adds or deletes it
-- (registration, linking, removal, an account's deletion): a new device starts at 0, a
-- removed one takes its counter along, as the column did; the column goes. PostgreSQL keeps
-- its schema.

CREATE TABLE mailbox_seq (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    last_seq   BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id)
) WITHOUT ROWID;

INSERT INTO mailbox_seq (account_id, device_id, last_seq)
SELECT account_id, device_id, last_seq FROM devices;

DROP TRIGGER envelopes_advance_last_seq;

-- as schema 6's trigger: a seq already advanced past (group fan-out) is left alone
CREATE TRIGGER envelopes_advance_last_seq AFTER INSERT ON envelopes
BEGIN
    UPDATE mailbox_seq SET last_seq = NEW.seq
    WHERE account_id = NEW.account_id AND device_id = NEW.device_id AND last_seq < NEW.seq;
END;

CREATE TRIGGER devices_add_mailbox_seq AFTER INSERT ON devices
BEGIN
    INSERT INTO mailbox_seq (account_id, device_id, last_seq)
    VALUES (NEW.account_id, NEW.device_id, 0);
END;

CREATE TRIGGER devices_drop_mailbox_seq AFTER DELETE ON devices
BEGIN
    DELETE FROM mailbox_seq WHERE account_id = OLD.account_id AND device_id = OLD.device_id;
END;

ALTER TABLE devices DROP COLUMN last_seq;

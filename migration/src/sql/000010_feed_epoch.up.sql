-- The change feed's epoch: a random id that signed cursors are bound to, so
-- a cursor is refused by another database (which has its own epoch) and
-- after `api restore`, which renews it: a restored log starts over at older
-- positions, and a cursor from before the restore would otherwise replay
-- the wrong events or silently skip new ones.
--
-- Idempotent: restoring a backup taken before this migration rolls the
-- migration ledger back while this table stays, and the migration then runs
-- again.
CREATE TABLE IF NOT EXISTS change_feed_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT change_feed_epoch_singleton CHECK (singleton),
    epoch     uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO change_feed_epoch DEFAULT VALUES ON CONFLICT DO NOTHING;

ALTER TABLE change_feed_epoch ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_feed_epoch FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS change_feed_epoch_read ON change_feed_epoch;
CREATE POLICY change_feed_epoch_read ON change_feed_epoch FOR SELECT TO app_realtime USING (true);
-- Only the table's owner holds UPDATE (no role is granted it): `api restore`
-- renews the epoch as the owner, which forced row security also filters.
DROP POLICY IF EXISTS change_feed_epoch_renew ON change_feed_epoch;
CREATE POLICY change_feed_epoch_renew ON change_feed_epoch FOR UPDATE TO PUBLIC USING (true) WITH CHECK (true);
GRANT SELECT ON change_feed_epoch TO app_realtime;

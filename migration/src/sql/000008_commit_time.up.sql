-- The listener's lag is measured from commit to broadcast. The log's
-- `created_at` is the writing transaction's *start* (now()), so a long
-- transaction would look like a slow listener; the commit stamp records
-- the time of commit too (clock_timestamp() in the deferred trigger, which
-- runs as the transaction commits). Older rows keep NULL.
ALTER TABLE change_commit ADD COLUMN committed_at timestamptz;

CREATE OR REPLACE FUNCTION app_stamp_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Held until the commit completes; the key is this feature's own.
    PERFORM pg_advisory_xact_lock(7262018542);
    UPDATE change_commit SET seq = nextval('change_commit_seq'), committed_at = clock_timestamp()
    WHERE txid = NEW.txid;
    RETURN NULL;
END
$$;

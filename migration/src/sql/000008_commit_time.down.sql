-- Back to stamping the sequence alone (migration 000003's function).
CREATE OR REPLACE FUNCTION app_stamp_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7262018542);
    UPDATE change_commit SET seq = nextval('change_commit_seq') WHERE txid = NEW.txid;
    RETURN NULL;
END
$$;

ALTER TABLE change_commit DROP COLUMN committed_at;

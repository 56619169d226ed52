-- Back to the generic capture function of migration 000003: every trigger
-- on a generated capture function runs app_capture_changes again with the
-- arguments it kept, and the generated functions go.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT tg.oid, p.oid AS fn
        FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
        WHERE p.proname ~ '^app_capture_.+_(insert|update|delete)$' AND NOT tg.tgisinternal
    LOOP
        EXECUTE regexp_replace(
            regexp_replace(pg_get_triggerdef(t.oid), '^CREATE TRIGGER', 'CREATE OR REPLACE TRIGGER'),
            'EXECUTE FUNCTION \S+\(', 'EXECUTE FUNCTION app_capture_changes(');
    END LOOP;
    FOR t IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
        WHERE p.proname ~ '^app_capture_.+_(insert|update|delete)$' AND p.prorettype = 'trigger'::regtype
    LOOP
        EXECUTE format('DROP FUNCTION %s', t.fn);
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS app_capture_compile();
DROP FUNCTION IF EXISTS app_capture_source(text, text, text, text, text[]);

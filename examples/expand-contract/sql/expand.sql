-- preShift hook "expand-schema": expand orders for v2 while v1 keeps running.
--
-- v1 reads and writes orders.customer_name ("Ada Lovelace"); v2 reads and writes
-- orders.customer_first ("Ada") and orders.customer_last ("Lovelace"). This script
--   1. adds the new columns, nullable, so v1's INSERTs keep working;
--   2. installs a BEFORE trigger that mirrors every write between the old and the new columns
--      (dual-write), so both versions can serve traffic at the same time;
--   3. backfills the rows written before the trigger existed, in small batches.
-- Every statement is idempotent: a retried Job (or a second run) changes nothing.
--
-- Mapping (lossless in both directions, join(split(name)) = name for every name):
--   split: customer_first = text before the first space (the whole name if there is none),
--          customer_last  = text after the first space, NULL if there is no space;
--   join:  concat_ws(' ', customer_first, customer_last); NULL when both are NULL.

-- Never queue DDL behind a long transaction (that would block all of orders): fail fast,
-- and let the hook's retries try again.
SET lock_timeout = '5s';

ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_first text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_last text;

CREATE OR REPLACE FUNCTION orders_first_name(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN split_part(name, ' ', 1);

CREATE OR REPLACE FUNCTION orders_last_name(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN strpos(name, ' ') > 0 THEN substr(name, strpos(name, ' ') + 1) END;

CREATE OR REPLACE FUNCTION orders_join_name(first text, last text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN first IS NULL AND last IS NULL THEN NULL
                ELSE concat_ws(' ', first, last) END;

-- Dual-write. A v1 writer only touches customer_name, a v2 writer only the new columns; the
-- trigger derives the other side. A writer that sets both sides at once is trusted as is.
CREATE OR REPLACE FUNCTION orders_dual_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    old_changed boolean;
    new_changed boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.customer_first IS NULL AND NEW.customer_last IS NULL THEN
            -- v1-style insert (or a guest order): derive the new columns.
            NEW.customer_first := orders_first_name(NEW.customer_name);
            NEW.customer_last := orders_last_name(NEW.customer_name);
        ELSIF NEW.customer_name IS NULL THEN
            -- v2-style insert: derive the old column.
            NEW.customer_name := orders_join_name(NEW.customer_first, NEW.customer_last);
        END IF;
        RETURN NEW;
    END IF;

    old_changed := NEW.customer_name IS DISTINCT FROM OLD.customer_name;
    new_changed := NEW.customer_first IS DISTINCT FROM OLD.customer_first
                OR NEW.customer_last IS DISTINCT FROM OLD.customer_last;
    IF old_changed AND NOT new_changed THEN
        NEW.customer_first := orders_first_name(NEW.customer_name);
        NEW.customer_last := orders_last_name(NEW.customer_name);
    ELSIF new_changed AND NOT old_changed THEN
        NEW.customer_name := orders_join_name(NEW.customer_first, NEW.customer_last);
    ELSIF NOT old_changed AND NOT new_changed
          AND NEW.customer_name IS NOT NULL
          AND NEW.customer_first IS NULL AND NEW.customer_last IS NULL THEN
        -- Any update of a row the backfill has not reached yet backfills it.
        NEW.customer_first := orders_first_name(NEW.customer_name);
        NEW.customer_last := orders_last_name(NEW.customer_name);
    END IF;
    RETURN NEW;
END
$$;

-- CREATE OR REPLACE: a re-run never leaves a moment without the trigger.
CREATE OR REPLACE TRIGGER orders_dual_write
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_dual_write();

-- Backfill the rows written before the trigger, 5000 at a time, committing each batch so
-- that locks stay short. Rows already filled (by the trigger or an earlier run) are skipped.
DO $$
DECLARE
    batch bigint;
    total bigint := 0;
BEGIN
    LOOP
        UPDATE orders
           SET customer_first = orders_first_name(customer_name),
               customer_last = orders_last_name(customer_name)
         WHERE id IN (SELECT id FROM orders
                       WHERE customer_name IS NOT NULL
                         AND customer_first IS NULL AND customer_last IS NULL
                       ORDER BY id
                       LIMIT 5000);
        GET DIAGNOSTICS batch = ROW_COUNT;
        EXIT WHEN batch = 0;
        total := total + batch;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'expand-schema: backfilled % rows', total;
END
$$;

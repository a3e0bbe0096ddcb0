-- onRollback hook "undo-expand": put the schema back the way v1 found it.
-- Runs after all traffic is back on blue (v1). Nothing is lost: while the trigger was in
-- place, every write v2 made to customer_first/customer_last was mirrored to customer_name.
-- Idempotent; a later Migration run simply expands again.
SET lock_timeout = '5s';

BEGIN;
DROP TRIGGER IF EXISTS orders_dual_write ON orders;
DROP FUNCTION IF EXISTS orders_dual_write();
ALTER TABLE orders DROP COLUMN IF EXISTS customer_first;
ALTER TABLE orders DROP COLUMN IF EXISTS customer_last;
DROP FUNCTION IF EXISTS orders_join_name(text, text);
DROP FUNCTION IF EXISTS orders_last_name(text);
DROP FUNCTION IF EXISTS orders_first_name(text);
COMMIT;

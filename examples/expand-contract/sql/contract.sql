-- postPromotion hook "contract-schema" (irreversible): remove what only v1 needed.
-- Runs after weight 100 and the bake window, when no v1 pod is left. Once customer_name is
-- dropped, v1 cannot run against this database any more: there is no automatic rollback.
-- Idempotent: a retry after a partial run finishes the job.
SET lock_timeout = '5s';

BEGIN;
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;

-- Last line of defence: never drop customer_name while it holds data the new columns lack.
DO $$
DECLARE
    missing bigint;
BEGIN
    IF EXISTS (SELECT FROM information_schema.columns
                WHERE table_schema = current_schema()
                  AND table_name = 'orders' AND column_name = 'customer_name') THEN
        EXECUTE 'SELECT count(*) FROM orders
                  WHERE customer_name IS NOT NULL
                    AND customer_name IS DISTINCT FROM
                        orders_join_name(customer_first, customer_last)'
           INTO missing;
        IF missing > 0 THEN
            RAISE EXCEPTION 'contract-schema refused: % rows hold a customer_name that '
                            'customer_first/customer_last do not', missing;
        END IF;
    END IF;
END
$$;

DROP TRIGGER IF EXISTS orders_dual_write ON orders;
DROP FUNCTION IF EXISTS orders_dual_write();
ALTER TABLE orders DROP COLUMN IF EXISTS customer_name;
DROP FUNCTION IF EXISTS orders_join_name(text, text);
DROP FUNCTION IF EXISTS orders_last_name(text);
DROP FUNCTION IF EXISTS orders_first_name(text);
COMMIT;

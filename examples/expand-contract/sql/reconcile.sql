-- afterStep hook "reconcile-data": prove that the old and the new columns hold the same data.
-- Runs after every traffic step, while v1 and v2 both write; any difference makes psql exit
-- non-zero (ON_ERROR_STOP), the hook fails, and the Migration rolls back.
--
-- Three checks, all on one snapshot:
--   missing  rows with customer_name but neither customer_first nor customer_last
--            (the backfill or the trigger missed them);
--   extra    rows with customer_first or customer_last but no customer_name
--            (written to the new columns only);
--   checksum per chunk of ids, md5 over customer_name against md5 over the join of the new
--            columns, ordered by id: catches rows present on both sides whose values differ.
-- The key range is every id by default; narrow it with psql variables, e.g.
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -v id_from=1 -v id_to=500000 -f reconcile.sql
\if :{?id_from}
\else
    \set id_from 0
\endif
\if :{?id_to}
\else
    \set id_to 9223372036854775807
\endif
\if :{?chunk_size}
\else
    \set chunk_size 10000
\endif

BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
-- psql does not substitute variables inside the DO body: hand them over as settings.
SET LOCAL reconcile.id_from = :'id_from';
SET LOCAL reconcile.id_to = :'id_to';
SET LOCAL reconcile.chunk_size = :'chunk_size';

DO $$
DECLARE
    id_from constant bigint := current_setting('reconcile.id_from')::bigint;
    id_to constant bigint := current_setting('reconcile.id_to')::bigint;
    chunk constant bigint := current_setting('reconcile.chunk_size')::bigint;
    lo bigint;
    hi bigint;
    chunk_hi bigint;
    missing bigint;
    extra bigint;
    checked bigint := 0;
    bad_chunks bigint := 0;
    first_bad text;
    old_sum text;
    new_sum text;
BEGIN
    SELECT count(*) INTO missing FROM orders
     WHERE id BETWEEN id_from AND id_to
       AND customer_name IS NOT NULL
       AND customer_first IS NULL AND customer_last IS NULL;

    SELECT count(*) INTO extra FROM orders
     WHERE id BETWEEN id_from AND id_to
       AND customer_name IS NULL
       AND (customer_first IS NOT NULL OR customer_last IS NOT NULL);

    SELECT min(id), max(id) INTO lo, hi FROM orders WHERE id BETWEEN id_from AND id_to;
    WHILE lo <= hi LOOP
        chunk_hi := least(lo + chunk - 1, hi);
        -- NULLs are spelled out so that a NULL on one side never hides in string_agg.
        SELECT md5(string_agg(coalesce(customer_name, '<null>'), E'\n' ORDER BY id)),
               md5(string_agg(coalesce(orders_join_name(customer_first, customer_last),
                                       '<null>'), E'\n' ORDER BY id))
          INTO old_sum, new_sum
          FROM orders WHERE id BETWEEN lo AND chunk_hi;
        checked := checked + 1;
        IF old_sum IS DISTINCT FROM new_sum THEN
            bad_chunks := bad_chunks + 1;
            first_bad := coalesce(first_bad, format('ids %s..%s', lo, chunk_hi));
        END IF;
        lo := chunk_hi + 1;
    END LOOP;

    RAISE NOTICE 'reconcile-data: ids %..%: missing in target: %, extra in target: %, '
                 'checksum mismatches: % of % chunks',
                 id_from, id_to, missing, extra, bad_chunks, checked;
    IF missing > 0 OR extra > 0 OR bad_chunks > 0 THEN
        RAISE EXCEPTION 'reconcile-data failed: missing in target: %, extra in target: %, '
                        'checksum mismatches: % of % chunks (first: %)',
                        missing, extra, bad_chunks, checked, coalesce(first_bad, 'none')
              USING HINT = 'orders.customer_name and customer_first/customer_last differ';
    END IF;
END
$$;
COMMIT;

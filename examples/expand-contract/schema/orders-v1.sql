-- The orders table as v1 of the service created it: the starting point of this example.
-- No hook runs this file; it documents the schema (and the SQL tests start from it).
-- customer_name is NULL for guest checkouts.
CREATE TABLE IF NOT EXISTS orders (
    id            bigserial   PRIMARY KEY,
    customer_name text,
    total_cents   bigint      NOT NULL CHECK (total_cents >= 0),
    status        text        NOT NULL DEFAULT 'placed',
    created_at    timestamptz NOT NULL DEFAULT now()
);

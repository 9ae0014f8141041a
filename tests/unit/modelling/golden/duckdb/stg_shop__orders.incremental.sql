/* Shop orders: canonical status and currency codes, latest version per order (merged from what */
/* landed since the last build; a deleted order is removed). */
WITH ranked AS (
  SELECT
    order_id,
    customer_id,
    ordered_at,
    UPPER(TRIM(status)) AS status,
    UPPER(TRIM(currency)) AS currency,
    updated_at,
    _ssot_op,
    ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY _ssot_loaded_at DESC, updated_at DESC) AS version_rank
  FROM (
    SELECT
      *
    FROM "raw"."shop__orders"
    WHERE
      "_ssot_loaded_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
)
SELECT
  order_id,
  customer_id,
  ordered_at,
  status,
  currency,
  updated_at,
  _ssot_op <> 'upsert' AS _deleted
FROM ranked
WHERE
  version_rank = 1

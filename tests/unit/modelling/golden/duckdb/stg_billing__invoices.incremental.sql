/* Invoices from the daily exports; a re-exported (corrected) invoice replaces the earlier one. */
WITH ranked AS (
  SELECT
    invoice_id,
    order_id,
    NULLIF(LOWER(TRIM(customer_email)), '') AS customer_email,
    amount,
    UPPER(TRIM(currency)) AS currency,
    issued_at,
    exported_at,
    _ssot_op,
    ROW_NUMBER() OVER (PARTITION BY invoice_id ORDER BY _ssot_loaded_at DESC, exported_at DESC) AS version_rank
  FROM (
    SELECT
      *
    FROM "raw"."billing__invoices"
    WHERE
      "_ssot_loaded_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
)
SELECT
  invoice_id,
  order_id,
  customer_email,
  amount,
  currency,
  issued_at,
  exported_at,
  _ssot_op <> 'upsert' AS _deleted
FROM ranked
WHERE
  version_rank = 1

/* Order lines with their amount; one row per line. */
WITH ranked AS (
  SELECT
    order_line_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    _ssot_op,
    ROW_NUMBER() OVER (PARTITION BY order_line_id ORDER BY _ssot_loaded_at DESC) AS version_rank
  FROM (
    SELECT
      *
    FROM `raw`.`shop__order_lines`
    WHERE
      `_ssot_loaded_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
  )
)
SELECT
  order_line_id,
  order_id,
  product_id,
  quantity,
  unit_price,
  CAST(quantity * unit_price AS NUMERIC) AS line_amount,
  _ssot_op <> 'upsert' AS _deleted
FROM ranked
WHERE
  version_rank = 1

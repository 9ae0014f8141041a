SELECT
  "order_line_id",
  "order_id",
  "product_id",
  "quantity",
  "unit_price",
  "line_amount"
FROM (
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
    FROM "raw"."shop__order_lines"
  )
  SELECT
    order_line_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    CAST(quantity * unit_price AS DECIMAL(18, 2)) AS line_amount,
    _ssot_op <> 'upsert' AS _deleted
  FROM ranked
  WHERE
    version_rank = 1
) AS _model
WHERE
  NOT COALESCE("_deleted", FALSE)

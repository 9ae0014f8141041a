SELECT
  `payment_id`,
  `invoice_id`,
  `amount`,
  `currency`,
  `paid_at`,
  `method`
FROM (
  /* Payments from the daily exports (late rows included); one row per payment. */
  WITH ranked AS (
    SELECT
      payment_id,
      invoice_id,
      amount,
      UPPER(TRIM(currency)) AS currency,
      paid_at,
      UPPER(TRIM(method)) AS method,
      _ssot_op,
      ROW_NUMBER() OVER (PARTITION BY payment_id ORDER BY _ssot_loaded_at DESC, paid_at DESC) AS version_rank
    FROM `raw`.`billing__payments`
  )
  SELECT
    payment_id,
    invoice_id,
    amount,
    currency,
    paid_at,
    method,
    _ssot_op <> 'upsert' AS _deleted
  FROM ranked
  WHERE
    version_rank = 1
) AS _model
WHERE
  NOT COALESCE(`_deleted`, FALSE)

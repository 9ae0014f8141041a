/* One row per payment, tied to its invoice, order and customer. */
/* Incrementally, only the payments touched since the last build are recomputed: the payment, */
/* its invoice, or its order's customer or status changed. */
WITH touched_invoices AS (
  SELECT
    invoice_id
  FROM (
    SELECT
      *
    FROM "ssot_meta"."changes__staging__stg_billing__invoices"
    WHERE
      "_ssot_change" <> 'reset'
      AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
  UNION
  SELECT
    invoice_id
  FROM "staging"."stg_billing__invoices"
  WHERE
    order_id IN (
      SELECT
        order_id
      FROM (
        SELECT
          order_id
        FROM (
          SELECT
            *
          FROM "ssot_meta"."changes__conformed__fct_orders"
          WHERE
            "_ssot_change" <> 'reset'
            AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
        )
        GROUP BY
          order_id
        HAVING
          COUNT(*) FILTER(WHERE
            _ssot_change = 'before') <> COUNT(*) FILTER(WHERE
            _ssot_change = 'after')
          OR COUNT(DISTINCT customer_key) + MAX(CASE WHEN customer_key IS NULL THEN 1 ELSE 0 END) > 1
          OR COUNT(DISTINCT status) + MAX(CASE WHEN status IS NULL THEN 1 ELSE 0 END) > 1
      )
    )
), payments /* incrementally: the payments that changed or whose invoice did, found in one scan */ AS (
  SELECT
    *
  FROM "staging"."stg_billing__payments"
  WHERE
    payment_id IN (
      SELECT
        payment_id
      FROM (
        SELECT
          *
        FROM "ssot_meta"."changes__staging__stg_billing__payments"
        WHERE
          "_ssot_change" <> 'reset'
          AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
      )
    )
    OR invoice_id IN (
      SELECT
        invoice_id
      FROM touched_invoices
    )
), affected AS (
  /* a payment gone from staging is only in its change feed */
  SELECT
    payment_id
  FROM (
    SELECT
      *
    FROM "ssot_meta"."changes__staging__stg_billing__payments"
    WHERE
      "_ssot_change" <> 'reset'
      AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
  UNION
  SELECT
    payment_id
  FROM payments
), invoices /* incrementally, only those payments' invoices and orders go into the joins (not 5 M rows each) */ AS (
  SELECT
    invoice_id,
    order_id
  FROM "staging"."stg_billing__invoices"
  WHERE
    invoice_id IN (
      SELECT
        invoice_id
      FROM payments
    )
), orders AS (
  SELECT
    order_id,
    customer_key,
    status
  FROM "conformed"."fct_orders"
  WHERE
    order_id IN (
      SELECT
        order_id
      FROM invoices
    )
), built AS (
  SELECT
    p.payment_id,
    p.invoice_id,
    i.order_id,
    o.customer_key,
    o.status AS order_status,
    p.amount,
    p.currency,
    p.paid_at,
    p.method
  FROM payments AS p
  LEFT JOIN invoices AS i
    ON i.invoice_id = p.invoice_id
  LEFT JOIN orders AS o
    ON o.order_id = i.order_id
)
/* incrementally: every affected payment, recomputed, or deleted when it is gone */
SELECT
  r.*
  REPLACE (a.payment_id AS payment_id),
  r.payment_id IS NULL AS _deleted
FROM affected AS a
LEFT JOIN built AS r
  ON r.payment_id = a.payment_id

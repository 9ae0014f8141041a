/* Customer lifetime value per currency: what each real customer ordered and paid, all time. */
/* Cancelled and refunded orders count neither as revenue nor as paid (their money went back). */
/* Incrementally, only the customers whose orders, payments or current record changed since the */
/* last build are recomputed: their rows are replaced (delete+insert on customer_key). */
WITH affected AS (
  SELECT
    customer_key
  FROM (
    SELECT
      *
    FROM "ssot_meta"."changes__conformed__fct_orders"
    WHERE
      "_ssot_change" <> 'reset'
      AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
  UNION
  SELECT
    customer_key
  FROM (
    SELECT
      *
    FROM "ssot_meta"."changes__conformed__fct_payments"
    WHERE
      "_ssot_change" <> 'reset'
      AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
  UNION
  /* persons whose current email changed, or who came or went */
  SELECT
    customer_key
  FROM (
    SELECT
      customer_key
    FROM (
      SELECT
        *
      FROM "ssot_meta"."changes__conformed__dim_customer"
      WHERE
        "_ssot_change" <> 'reset'
        AND "_ssot_changed_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
    )
    GROUP BY
      customer_key
    HAVING
      COUNT(*) FILTER(WHERE
        _ssot_change = 'before') <> COUNT(*) FILTER(WHERE
        _ssot_change = 'after')
      OR COUNT(DISTINCT email) + MAX(CASE WHEN email IS NULL THEN 1 ELSE 0 END) > 1
  )
), fct_orders AS (
  SELECT
    *
  FROM "conformed"."fct_orders"
  WHERE
    customer_key IN (
      SELECT
        customer_key
      FROM affected
    )
), fct_payments AS (
  SELECT
    *
  FROM "conformed"."fct_payments"
  WHERE
    customer_key IN (
      SELECT
        customer_key
      FROM affected
    )
), orders AS (
  SELECT
    customer_key,
    currency,
    COUNT(*) AS orders,
    SUM(CASE WHEN status IN ('CANCELLED', 'REFUNDED') THEN 0 ELSE order_total END) AS revenue,
    MIN(ordered_at) AS first_order_at,
    MAX(ordered_at) AS last_order_at
  FROM fct_orders
  WHERE
    NOT customer_key IS NULL
  GROUP BY
    customer_key,
    currency
), payments AS (
  SELECT
    customer_key,
    currency,
    SUM(amount) AS paid
  FROM fct_payments
  WHERE
    NOT customer_key IS NULL AND NOT order_status IN ('CANCELLED', 'REFUNDED')
  GROUP BY
    customer_key,
    currency
), built AS (
  SELECT
    c.customer_key,
    c.email,
    o.currency,
    o.orders,
    CAST(o.revenue AS DECIMAL(18, 2)) AS revenue,
    CAST(COALESCE(p.paid, 0) AS DECIMAL(18, 2)) AS paid,
    CAST(o.revenue - COALESCE(p.paid, 0) AS DECIMAL(18, 2)) AS outstanding,
    o.first_order_at,
    o.last_order_at
  FROM orders AS o
  JOIN "conformed"."dim_customer" AS c
    ON c.customer_key = o.customer_key AND c.is_current
  LEFT JOIN payments AS p
    ON p.customer_key = o.customer_key AND p.currency = o.currency
)
/* incrementally: every affected customer's rows, or one row deleting them all when none is left */
SELECT
  r.*
  REPLACE (a.customer_key AS customer_key),
  r.customer_key IS NULL AS _deleted
FROM affected AS a
LEFT JOIN built AS r
  ON r.customer_key = a.customer_key

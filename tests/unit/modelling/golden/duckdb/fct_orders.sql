SELECT
  *
  EXCLUDE ("_deleted")
FROM (
  /* One row per order with its customer and its total (sum of its lines), in the order's currency. */
  /* Incrementally, only the orders touched since the last build are recomputed: the order or */
  /* one of its lines changed, or its customer was matched to another person. */
  WITH orders AS (
    SELECT
      *
    FROM "staging"."stg_shop__orders"
  ), lines AS (
    SELECT
      *
    FROM "staging"."stg_shop__order_lines"
  ), line_totals AS (
    SELECT
      order_id,
      COUNT(*) AS line_count,
      SUM(quantity) AS item_count,
      SUM(line_amount) AS order_total
    FROM lines
    GROUP BY
      order_id
  ), shop_customers AS (
    SELECT
      record_id,
      customer_key
    FROM "conformed"."int_customer_records"
    WHERE
      source_system = 'shop'
  ), built AS (
    SELECT
      o.order_id,
      c.customer_key,
      o.customer_id AS shop_customer_id,
      o.ordered_at,
      o.status,
      o.currency,
      COALESCE(t.line_count, 0) AS line_count,
      COALESCE(t.item_count, 0) AS item_count,
      CAST(COALESCE(t.order_total, 0) AS DECIMAL(18, 2)) AS order_total,
      o.updated_at
    FROM orders AS o
    LEFT JOIN line_totals AS t
      ON t.order_id = o.order_id
    LEFT JOIN shop_customers AS c
      ON c.record_id = CAST(o.customer_id AS TEXT)
  )
  /* incrementally: every affected order, recomputed, or deleted when it is gone from the shop */
  SELECT
    *,
    FALSE AS _deleted
  FROM built
) AS _model
WHERE
  NOT COALESCE("_deleted", FALSE)

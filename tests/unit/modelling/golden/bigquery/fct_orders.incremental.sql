/* One row per order with its customer and its total (sum of its lines), in the order's currency. */
/* Incrementally, only the orders touched since the last build are recomputed: the order or */
/* one of its lines changed, or its customer was matched to another person. */
WITH affected AS (
  SELECT
    order_id
  FROM (
    SELECT
      *
    FROM `ssot_meta`.`changes__staging__stg_shop__orders`
    WHERE
      `_ssot_change` <> 'reset'
      AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
  )
  UNION DISTINCT
  SELECT
    order_id
  FROM (
    SELECT
      *
    FROM `ssot_meta`.`changes__staging__stg_shop__order_lines`
    WHERE
      `_ssot_change` <> 'reset'
      AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
  )
  UNION DISTINCT
  /* the orders of shop customers matched to another person (or gone) */
  /* (a shop record's id is its customer id as text: cast the few changed ids back rather */
  /* than every order's customer id to text) */
  SELECT
    order_id
  FROM `staging`.`stg_shop__orders`
  WHERE
    customer_id IN (
      SELECT
        SAFE_CAST(record_id AS INT64)
      FROM (
        SELECT
          source_system,
          record_id
        FROM (
          SELECT
            *
          FROM `ssot_meta`.`changes__conformed__int_customer_records`
          WHERE
            `_ssot_change` <> 'reset'
            AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
        )
        GROUP BY
          source_system,
          record_id
        HAVING
          COUNTIF(_ssot_change = 'before') <> COUNTIF(_ssot_change = 'after')
          OR COUNT(DISTINCT customer_key) + MAX(CASE WHEN customer_key IS NULL THEN 1 ELSE 0 END) > 1
      )
      WHERE
        source_system = 'shop'
    )
), orders AS (
  SELECT
    *
  FROM `staging`.`stg_shop__orders`
  WHERE
    order_id IN (
      SELECT
        order_id
      FROM affected
    )
), lines AS (
  SELECT
    *
  FROM `staging`.`stg_shop__order_lines`
  WHERE
    order_id IN (
      SELECT
        order_id
      FROM affected
    )
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
  FROM `conformed`.`int_customer_records`
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
    CAST(COALESCE(t.order_total, 0) AS NUMERIC) AS order_total,
    o.updated_at
  FROM orders AS o
  LEFT JOIN line_totals AS t
    ON t.order_id = o.order_id
  LEFT JOIN shop_customers AS c
    ON c.record_id = CAST(o.customer_id AS STRING)
)
/* incrementally: every affected order, recomputed, or deleted when it is gone from the shop */
SELECT
  r.*
  REPLACE (a.order_id AS order_id),
  r.order_id IS NULL AS _deleted
FROM affected AS a
LEFT JOIN built AS r
  ON r.order_id = a.order_id

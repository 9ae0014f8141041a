SELECT
  COUNT(*) AS "failures"
FROM (
  SELECT
    "order_id",
    COUNT(*) AS "n_records"
  FROM "orders"
  WHERE
    NOT "order_id" IS NULL
  GROUP BY
    "order_id"
  HAVING
    COUNT(*) > 1
) AS "failing"

SELECT
  *
FROM "orders"
WHERE
  "select" IS NULL

SELECT
  "child".*
FROM "orders" AS "child"
LEFT JOIN "customers" AS "parent"
  ON "child"."customer_id" = "parent"."customer_id"
WHERE
  NOT "child"."customer_id" IS NULL AND "parent"."customer_id" IS NULL

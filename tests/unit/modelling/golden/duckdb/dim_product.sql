/* One row per real product: listings with the same normalized SKU are the same product. */
WITH ranked AS (
  SELECT
    *,
    ROW_NUMBER() OVER (PARTITION BY sku ORDER BY updated_at DESC, product_id DESC) AS recency,
    COUNT(*) OVER (PARTITION BY sku) AS listings
  FROM "staging"."stg_shop__products"
)
SELECT
  MD5(sku) AS product_key,
  sku,
  product_name,
  category,
  list_price,
  currency,
  listings,
  updated_at
FROM ranked
WHERE
  recency = 1

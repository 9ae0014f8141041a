SELECT
  "product_id",
  "sku",
  "product_name",
  "category",
  "list_price",
  "currency",
  "updated_at"
FROM (
  /* Shop catalogue listings with a normalized SKU (upper case, no dashes or spaces). */
  WITH ranked AS (
    SELECT
      product_id,
      UPPER(REGEXP_REPLACE(sku, '[-\s]', '', 'g')) AS sku,
      TRIM(name) AS product_name,
      NULLIF(TRIM(category), '') AS category,
      list_price,
      UPPER(TRIM(currency)) AS currency,
      updated_at,
      _ssot_op,
      ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY _ssot_loaded_at DESC, updated_at DESC) AS version_rank
    FROM "raw"."shop__products"
  )
  SELECT
    product_id,
    sku,
    product_name,
    category,
    list_price,
    currency,
    updated_at,
    _ssot_op <> 'upsert' AS _deleted
  FROM ranked
  WHERE
    version_rank = 1
) AS _model
WHERE
  NOT COALESCE("_deleted", FALSE)

SELECT
  `customer_id`,
  `first_name`,
  `last_name`,
  `email`,
  `phone`,
  `created_at`,
  `updated_at`
FROM (
  /* Shop customers: normalized email and phone, latest version per customer. */
  WITH ranked AS (
    SELECT
      customer_id,
      NULLIF(REGEXP_REPLACE(TRIM(first_name), '\\s+', ' '), '') AS first_name,
      NULLIF(REGEXP_REPLACE(TRIM(last_name), '\\s+', ' '), '') AS last_name,
      NULLIF(LOWER(TRIM(email)), '') AS email,
      NULLIF(REGEXP_REPLACE(phone, '[^0-9]', ''), '') AS phone_digits,
      created_at,
      updated_at,
      _ssot_op,
      ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY _ssot_loaded_at DESC, updated_at DESC) AS version_rank
    FROM `raw`.`shop__customers`
  )
  SELECT
    customer_id,
    first_name,
    last_name,
    email,
    CASE WHEN LENGTH(phone_digits) = 10 THEN '1' || phone_digits ELSE phone_digits END AS phone,
    created_at,
    updated_at,
    _ssot_op <> 'upsert' AS _deleted
  FROM ranked
  WHERE
    version_rank = 1
) AS _model
WHERE
  NOT COALESCE(`_deleted`, FALSE)

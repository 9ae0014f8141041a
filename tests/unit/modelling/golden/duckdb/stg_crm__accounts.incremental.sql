/* CRM accounts: tidy names and country codes, keep the latest version of each account. */
WITH ranked AS (
  SELECT
    account_id,
    TRIM(name) AS account_name,
    NULLIF(TRIM(industry), '') AS industry,
    NULLIF(UPPER(TRIM(country)), '') AS country_code,
    created_at,
    updated_at,
    _ssot_op,
    ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY _ssot_loaded_at DESC, updated_at DESC) AS version_rank
  FROM (
    SELECT
      *
    FROM "raw"."crm__accounts"
    WHERE
      "_ssot_loaded_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
)
SELECT
  account_id,
  account_name,
  industry,
  country_code,
  created_at,
  updated_at,
  _ssot_op <> 'upsert' AS _deleted
FROM ranked
WHERE
  version_rank = 1

/* CRM contacts: normalized email and phone, latest version per contact, soft-deleted ones dropped. */
WITH ranked AS (
  SELECT
    TRIM(contact_id) AS contact_id,
    account_id,
    NULLIF(REGEXP_REPLACE(TRIM(first_name), '\s+', ' ', 'g'), '') AS first_name,
    NULLIF(REGEXP_REPLACE(TRIM(last_name), '\s+', ' ', 'g'), '') AS last_name,
    NULLIF(LOWER(TRIM(email)), '') AS email,
    NULLIF(REGEXP_REPLACE(phone, '[^0-9]', '', 'g'), '') AS phone_digits,
    NULLIF(UPPER(TRIM(country)), '') AS country_code,
    created_at,
    updated_at,
    deleted_at,
    _ssot_op,
    ROW_NUMBER() OVER (PARTITION BY TRIM(contact_id) ORDER BY _ssot_loaded_at DESC, updated_at DESC) AS version_rank
  FROM (
    SELECT
      *
    FROM "raw"."crm__contacts"
    WHERE
      "_ssot_loaded_at" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
  )
)
SELECT
  contact_id,
  account_id,
  first_name,
  last_name,
  email,
  CASE WHEN LENGTH(phone_digits) = 10 THEN '1' || phone_digits ELSE phone_digits END AS phone, /* 10 digits are a US number written without its country code */
  country_code,
  created_at,
  updated_at,
  _ssot_op <> 'upsert' OR NOT deleted_at IS NULL AS _deleted
FROM ranked
WHERE
  version_rank = 1

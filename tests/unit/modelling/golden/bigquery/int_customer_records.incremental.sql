/* Every live person record from the CRM and the shop with the key of the real person it belongs to. */
/* Matching rule (deterministic): records with the same normalized email are one person; a */
/* record without an email joins the person whose record has the same normalized phone; a */
/* record with neither stays a person of its own. */
/* Incrementally, a record's key can change only when a record sharing its phone changed (its */
/* email or phone, or it came or went), so only those records are matched again. */
WITH changed /* the records changed since the last build, as they were and as they are */ AS (
  SELECT
    'crm' AS source_system,
    contact_id AS record_id,
    phone
  FROM (
    SELECT
      *
    FROM `ssot_meta`.`changes__staging__stg_crm__contacts`
    WHERE
      `_ssot_change` <> 'reset'
      AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
  )
  UNION ALL
  SELECT
    'shop' AS source_system,
    CAST(customer_id AS STRING) AS record_id,
    phone
  FROM (
    SELECT
      *
    FROM `ssot_meta`.`changes__staging__stg_shop__customers`
    WHERE
      `_ssot_change` <> 'reset'
      AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
  )
), touched_phones AS (
  SELECT DISTINCT
    phone
  FROM changed
  WHERE
    NOT phone IS NULL
), records /* incrementally, only the records that can be matched again: those changed, and those */ /* sharing a phone with one (filtered here, so the query never holds every record) */ AS (
  SELECT
    'crm' AS source_system,
    contact_id AS record_id,
    email,
    phone,
    first_name,
    last_name,
    country_code,
    created_at,
    updated_at
  FROM `staging`.`stg_crm__contacts`
  WHERE
    phone IN (
      SELECT
        phone
      FROM touched_phones
    )
    OR contact_id IN (
      SELECT
        record_id
      FROM changed
      WHERE
        source_system = 'crm'
    )
  UNION ALL
  SELECT
    'shop' AS source_system,
    CAST(customer_id AS STRING) AS record_id,
    email,
    phone,
    first_name,
    last_name,
    CAST(NULL AS STRING) AS country_code,
    created_at,
    updated_at
  FROM `staging`.`stg_shop__customers`
  WHERE
    phone IN (
      SELECT
        phone
      FROM touched_phones
    )
    OR customer_id IN (
      SELECT
        customer_id
      FROM (
        SELECT
          *
        FROM `ssot_meta`.`changes__staging__stg_shop__customers`
        WHERE
          `_ssot_change` <> 'reset'
          AND `_ssot_changed_at` > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMP)
      )
    )
), affected /* a record gone from its source is only in its change feed */ AS (
  SELECT
    source_system,
    record_id
  FROM changed
  UNION DISTINCT
  SELECT
    source_system,
    record_id
  FROM records
), email_by_phone AS (
  SELECT
    phone,
    MIN(email) AS email
  FROM records
  WHERE
    NOT email IS NULL
    AND NOT phone IS NULL
    AND phone IN (
      SELECT
        phone
      FROM touched_phones
    )
  GROUP BY
    phone
), keyed AS (
  SELECT
    r.*,
    COALESCE(
      r.email,
      p.email,
      'phone:' || r.phone,
      'record:' || r.source_system || ':' || r.record_id
    ) AS person_key
  FROM records AS r
  /* an equi-join (one row per phone), so it is a hash join; coalesce prefers r.email anyway */
  LEFT JOIN email_by_phone AS p
    ON p.phone = r.phone
), built AS (
  SELECT
    CAST('0x' || SUBSTRING(TO_HEX(MD5(person_key)), 1, 15) AS INT64) AS customer_key, /* the person's surrogate key: 60 bits of the matching key's MD5 as a BIGINT (the same */ /* value on DuckDB and BigQuery). Joins, scans and hashes on an integer cost a fraction */ /* of those on 32-character text. Two persons with one key would be merged; with 60 */ /* bits the chance is about 1 in 2.3 M for a million persons. */
    source_system,
    record_id,
    email,
    phone,
    first_name,
    last_name,
    country_code,
    created_at,
    updated_at
  FROM keyed
)
/* incrementally: every affected record, matched again, or deleted when gone from its source */
SELECT
  r.*
  REPLACE (a.source_system AS source_system, a.record_id AS record_id),
  r.source_system IS NULL AS _deleted
FROM affected AS a
LEFT JOIN built AS r
  ON r.source_system = a.source_system AND r.record_id = a.record_id

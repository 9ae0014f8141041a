SELECT
  *
  EXCEPT (`_deleted`)
FROM (
  /* One row per real person across CRM and shop: the golden record. */
  /* Names come from the person's most recently updated record. Email is the person's one */
  /* normalized email (the match key); phone and country are the greatest value among the */
  /* person's records, so the choice is deterministic. */
  /* Incrementally, only the persons whose records changed since the last build are recomputed; */
  /* a person left without records is closed (deleted_flag). */
  WITH records AS (
    SELECT
      *
    FROM `conformed`.`int_customer_records`
  ), ranked AS (
    SELECT
      *,
      ROW_NUMBER() OVER (
        PARTITION BY customer_key
        ORDER BY updated_at DESC, source_system NULLS LAST, record_id NULLS LAST
      ) AS recency
    FROM records
  ), latest AS (
    SELECT
      customer_key,
      first_name,
      last_name
    FROM ranked
    WHERE
      recency = 1
  ), golden AS (
    SELECT
      k.customer_key,
      MAX(k.email) AS email,
      MAX(k.phone) AS phone,
      l.first_name,
      l.last_name,
      MAX(k.country_code) AS country_code,
      COUNTIF(k.source_system = 'crm') AS crm_records,
      COUNTIF(k.source_system = 'shop') AS shop_records,
      MIN(k.created_at) AS first_seen_at,
      MAX(k.updated_at) AS updated_at
    FROM records AS k
    JOIN latest AS l
      ON l.customer_key = k.customer_key
    GROUP BY
      k.customer_key,
      l.first_name,
      l.last_name
  ), named /* the country's name comes from the `countries` seed */ AS (
    SELECT
      g.*,
      c.country_name
    FROM golden AS g
    LEFT JOIN `seeds`.`countries` AS c
      ON c.country_code = g.country_code
  )
  /* incrementally: every affected person, recomputed, or closed when no record is left */
  SELECT
    *,
    FALSE AS _deleted
  FROM named
) AS _model
WHERE
  NOT COALESCE(`_deleted`, FALSE)

SELECT
  *
FROM (
  SELECT
    `order_id`,
    COUNT(*) AS `n_records`
  FROM `my-project`.`analytics`.`orders`
  WHERE
    NOT `order_id` IS NULL
  GROUP BY
    `order_id`
  HAVING
    COUNT(*) > 1
) AS `failing`
LIMIT 3

SELECT
  *
FROM `my-project`.`analytics`.`orders`
WHERE
  `select` IS NULL

SELECT
  *
FROM `my-project`.`analytics`.`orders`
WHERE
  NOT `select` IS NULL AND NOT `select` IN ('PAID', 'SHIPPED')

SELECT
  `child`.*
FROM `my-project`.`analytics`.`orders` AS `child`
LEFT JOIN `my-project`.`analytics`.`customers` AS `parent`
  ON `child`.`customer_id` = `parent`.`customer_id`
WHERE
  NOT `child`.`customer_id` IS NULL AND `parent`.`customer_id` IS NULL

SELECT
  *
  EXCEPT (`_deleted`)
FROM (
  /* One row per payment, tied to its invoice, order and customer. */
  /* Incrementally, only the payments touched since the last build are recomputed: the payment, */
  /* its invoice, or its order's customer or status changed. */
  WITH payments AS (
    SELECT
      *
    FROM `staging`.`stg_billing__payments`
  ), built AS (
    SELECT
      p.payment_id,
      p.invoice_id,
      i.order_id,
      o.customer_key,
      o.status AS order_status,
      p.amount,
      p.currency,
      p.paid_at,
      p.method
    FROM payments AS p
    LEFT JOIN `staging`.`stg_billing__invoices` AS i
      ON i.invoice_id = p.invoice_id
    LEFT JOIN `conformed`.`fct_orders` AS o
      ON o.order_id = i.order_id
  )
  /* incrementally: every affected payment, recomputed, or deleted when it is gone */
  SELECT
    *,
    FALSE AS _deleted
  FROM built
) AS _model
WHERE
  NOT COALESCE(`_deleted`, FALSE)

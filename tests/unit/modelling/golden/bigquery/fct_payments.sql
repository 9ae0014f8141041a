SELECT
  *
  EXCEPT (`_deleted`)
FROM (
  /* One row per payment, tied to its invoice, order and customer. */
  /* Incrementally, only the payments touched since the last build are recomputed: the payment, */
  /* its invoice, or its order's customer or status changed. */
  WITH payments /* incrementally: the payments that changed or whose invoice did, found in one scan */ AS (
    SELECT
      *
    FROM `staging`.`stg_billing__payments`
  ), invoices /* incrementally, only those payments' invoices and orders go into the joins (not 5 M rows each) */ AS (
    SELECT
      invoice_id,
      order_id
    FROM `staging`.`stg_billing__invoices`
  ), orders AS (
    SELECT
      order_id,
      customer_key,
      status
    FROM `conformed`.`fct_orders`
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
    LEFT JOIN invoices AS i
      ON i.invoice_id = p.invoice_id
    LEFT JOIN orders AS o
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

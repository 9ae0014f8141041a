/* One row per payment, tied to its invoice, order and customer. */
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
FROM "staging"."stg_billing__payments" AS p
LEFT JOIN "staging"."stg_billing__invoices" AS i
  ON i.invoice_id = p.invoice_id
LEFT JOIN "conformed"."fct_orders" AS o
  ON o.order_id = i.order_id

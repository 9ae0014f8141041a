-- One row per payment, tied to its invoice, order and customer.
select
    p.payment_id,
    p.invoice_id,
    i.order_id,
    o.customer_key,
    o.status as order_status,
    p.amount,
    p.currency,
    p.paid_at,
    p.method
from {{ ref('stg_billing__payments') }} as p
left join {{ ref('stg_billing__invoices') }} as i on i.invoice_id = p.invoice_id
left join {{ ref('fct_orders') }} as o on o.order_id = i.order_id

-- Customer lifetime value per currency: what each real customer ordered and paid, all time.
-- Cancelled and refunded orders count neither as revenue nor as paid (their money went back).
with orders as (
    select
        customer_key,
        currency,
        count(*) as orders,
        sum(case when status in ('CANCELLED', 'REFUNDED') then 0 else order_total end) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from {{ ref('fct_orders') }}
    where customer_key is not null
    group by customer_key, currency
),
payments as (
    select customer_key, currency, sum(amount) as paid
    from {{ ref('fct_payments') }}
    where customer_key is not null and order_status not in ('CANCELLED', 'REFUNDED')
    group by customer_key, currency
)
select
    c.customer_key,
    c.email,
    o.currency,
    o.orders,
    cast(o.revenue as decimal(18, 2)) as revenue,
    cast(coalesce(p.paid, 0) as decimal(18, 2)) as paid,
    cast(o.revenue - coalesce(p.paid, 0) as decimal(18, 2)) as outstanding,
    o.first_order_at,
    o.last_order_at
from orders as o
join {{ ref('dim_customer') }} as c on c.customer_key = o.customer_key and c.is_current
left join payments as p on p.customer_key = o.customer_key and p.currency = o.currency

-- Customer lifetime value per currency: what each real customer ordered and paid, all time.
-- Cancelled and refunded orders count neither as revenue nor as paid (their money went back).
-- Incrementally, only the customers whose orders, payments or current record changed since the
-- last build are recomputed: their rows are replaced (delete+insert on customer_key).
{{ config(
    materialized='incremental',
    unique_key='customer_key',
    incremental_strategy='delete+insert',
    deleted_flag='_deleted',
) }}
with
{% if is_incremental() %}
affected as (
    select customer_key from {{ changes('fct_orders') }}
    union
    select customer_key from {{ changes('fct_payments') }}
    union
    -- persons whose current email changed, or who came or went
    select customer_key
    from {{ changed_keys('dim_customer', 'customer_key', ['email']) }}
),
{% endif %}
fct_orders as ({{ affected_rows('fct_orders', 'customer_key') }}),
fct_payments as ({{ affected_rows('fct_payments', 'customer_key') }}),
orders as (
    select
        customer_key,
        currency,
        count(*) as orders,
        sum(case when status in ('CANCELLED', 'REFUNDED') then 0 else order_total end) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from fct_orders
    where customer_key is not null
    group by customer_key, currency
),
payments as (
    select customer_key, currency, sum(amount) as paid
    from fct_payments
    where customer_key is not null and order_status not in ('CANCELLED', 'REFUNDED')
    group by customer_key, currency
),
built as (
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
)
-- incrementally: every affected customer's rows, or one row deleting them all when none is left
{{ rows_or_deletions('built', 'customer_key') }}

-- One row per order with its customer and its total (sum of its lines), in the order's currency.
with line_totals as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_count,
        sum(line_amount) as order_total
    from {{ ref('stg_shop__order_lines') }}
    group by order_id
),
shop_customers as (
    select record_id, customer_key
    from {{ ref('int_customer_records') }}
    where source_system = 'shop'
)
select
    o.order_id,
    c.customer_key,
    o.customer_id as shop_customer_id,
    o.ordered_at,
    o.status,
    o.currency,
    coalesce(t.line_count, 0) as line_count,
    coalesce(t.item_count, 0) as item_count,
    cast(coalesce(t.order_total, 0) as decimal(18, 2)) as order_total,
    o.updated_at
from {{ ref('stg_shop__orders') }} as o
left join line_totals as t on t.order_id = o.order_id
left join shop_customers as c on c.record_id = cast(o.customer_id as varchar)

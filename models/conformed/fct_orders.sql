-- One row per order with its customer and its total (sum of its lines), in the order's currency.
-- Incrementally, only the orders touched since the last build are recomputed: the order or
-- one of its lines changed, or its customer was matched to another person.
{{ config(materialized='incremental', unique_key='order_id', deleted_flag='_deleted') }}
with
{% if is_incremental() %}
affected as (
    select order_id from {{ changes('stg_shop__orders') }}
    union
    select order_id from {{ changes('stg_shop__order_lines') }}
    union
    -- the orders of shop customers matched to another person (or gone)
    -- (a shop record's id is its customer id as text: cast the few changed ids back rather
    -- than every order's customer id to text)
    select order_id
    from {{ ref('stg_shop__orders') }}
    where customer_id in (
        select try_cast(record_id as bigint)
        from {{ changed_keys('int_customer_records', 'source_system, record_id', ['customer_key']) }}
        where source_system = 'shop'
    )
),
{% endif %}
orders as ({{ affected_rows('stg_shop__orders', 'order_id') }}),
lines as ({{ affected_rows('stg_shop__order_lines', 'order_id') }}),
line_totals as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_count,
        sum(line_amount) as order_total
    from lines
    group by order_id
),
shop_customers as (
    select record_id, customer_key
    from {{ ref('int_customer_records') }}
    where source_system = 'shop'
),
built as (
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
    from orders as o
    left join line_totals as t on t.order_id = o.order_id
    left join shop_customers as c on c.record_id = cast(o.customer_id as varchar)
)
-- incrementally: every affected order, recomputed, or deleted when it is gone from the shop
{{ rows_or_deletions('built', 'order_id') }}

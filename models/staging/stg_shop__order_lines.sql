-- Order lines with their amount; one row per line.
{{ config(materialized='incremental', unique_key='order_line_id', deleted_flag='_deleted') }}
with ranked as (
    select
        order_line_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        _ssot_op,
        {{ version_rank('order_line_id') }}
    from {{ landed('shop', 'order_lines') }}
)
select
    order_line_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    cast(quantity * unit_price as decimal(18, 2)) as line_amount,
    {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

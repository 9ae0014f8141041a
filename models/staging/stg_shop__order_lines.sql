-- Order lines with their amount; one row per line.
with ranked as (
    select
        order_line_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        _ssot_op,
        {{ version_rank('order_line_id') }}
    from {{ source('shop', 'order_lines') }}
)
select
    order_line_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    cast(quantity * unit_price as decimal(18, 2)) as line_amount
from ranked
where {{ is_latest_live() }}

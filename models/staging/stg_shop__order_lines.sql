-- Order lines with their amount; one row per line.
with ranked as (
    select
        order_line_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        _ssot_op,
        row_number() over (
            partition by order_line_id order by _ssot_loaded_at desc
        ) as version_rank
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
where version_rank = 1 and _ssot_op = 'upsert'

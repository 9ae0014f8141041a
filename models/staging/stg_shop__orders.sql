-- Shop orders: canonical status and currency codes, latest version per order.
with ranked as (
    select
        order_id,
        customer_id,
        ordered_at,
        upper(trim(status)) as status,
        upper(trim(currency)) as currency,
        updated_at,
        _ssot_op,
        row_number() over (
            partition by order_id order by _ssot_loaded_at desc, updated_at desc
        ) as version_rank
    from {{ source('shop', 'orders') }}
)
select order_id, customer_id, ordered_at, status, currency, updated_at
from ranked
where version_rank = 1 and _ssot_op = 'upsert'

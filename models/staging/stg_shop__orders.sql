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
        {{ version_rank('order_id', 'updated_at') }}
    from {{ source('shop', 'orders') }}
)
select order_id, customer_id, ordered_at, status, currency, updated_at
from ranked
where {{ is_latest_live() }}

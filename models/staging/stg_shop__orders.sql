-- Shop orders: canonical status and currency codes, latest version per order (merged from what
-- landed since the last build; a deleted order is removed).
{{ config(materialized='incremental', unique_key='order_id', deleted_flag='_deleted') }}
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
    from {{ landed('shop', 'orders') }}
)
select order_id, customer_id, ordered_at, status, currency, updated_at, {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

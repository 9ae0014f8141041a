-- Shop catalogue listings with a normalized SKU (upper case, no dashes or spaces).
with ranked as (
    select
        product_id,
        upper(regexp_replace(sku, '[-\s]', '', 'g')) as sku,
        trim(name) as product_name,
        nullif(trim(category), '') as category,
        list_price,
        upper(trim(currency)) as currency,
        updated_at,
        _ssot_op,
        {{ version_rank('product_id', 'updated_at') }}
    from {{ source('shop', 'products') }}
)
select product_id, sku, product_name, category, list_price, currency, updated_at
from ranked
where {{ is_latest_live() }}

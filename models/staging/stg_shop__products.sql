-- Shop catalogue listings with a normalized SKU (upper case, no dashes or spaces).
{{ config(materialized='incremental', unique_key='product_id', deleted_flag='_deleted') }}
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
    from {{ landed('shop', 'products') }}
)
select product_id, sku, product_name, category, list_price, currency, updated_at, {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

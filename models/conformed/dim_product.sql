-- One row per real product: listings with the same normalized SKU are the same product.
with ranked as (
    select
        *,
        row_number() over (partition by sku order by updated_at desc, product_id desc) as recency,
        count(*) over (partition by sku) as listings
    from {{ ref('stg_shop__products') }}
)
select
    md5(sku) as product_key,
    sku,
    product_name,
    category,
    list_price,
    currency,
    listings,
    updated_at
from ranked
where recency = 1

-- Shop customers: normalized email and phone, latest version per customer.
{{ config(materialized='incremental', unique_key='customer_id', deleted_flag='_deleted') }}
with ranked as (
    select
        customer_id,
        nullif(regexp_replace(trim(first_name), '\s+', ' ', 'g'), '') as first_name,
        nullif(regexp_replace(trim(last_name), '\s+', ' ', 'g'), '') as last_name,
        nullif(lower(trim(email)), '') as email,
        nullif(regexp_replace(phone, '[^0-9]', '', 'g'), '') as phone_digits,
        created_at,
        updated_at,
        _ssot_op,
        {{ version_rank('customer_id', 'updated_at') }}
    from {{ landed('shop', 'customers') }}
)
select
    customer_id,
    first_name,
    last_name,
    email,
    case when length(phone_digits) = 10 then '1' || phone_digits else phone_digits end as phone,
    created_at,
    updated_at,
    {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

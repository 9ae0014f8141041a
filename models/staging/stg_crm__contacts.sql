-- CRM contacts: normalized email and phone, latest version per contact, soft-deleted ones dropped.
{{ config(materialized='incremental', unique_key='contact_id', deleted_flag='_deleted') }}
with ranked as (
    select
        trim(contact_id) as contact_id,
        account_id,
        nullif(regexp_replace(trim(first_name), '\s+', ' ', 'g'), '') as first_name,
        nullif(regexp_replace(trim(last_name), '\s+', ' ', 'g'), '') as last_name,
        nullif(lower(trim(email)), '') as email,
        nullif(regexp_replace(phone, '[^0-9]', '', 'g'), '') as phone_digits,
        nullif(upper(trim(country)), '') as country_code,
        created_at,
        updated_at,
        deleted_at,
        _ssot_op,
        {{ version_rank('trim(contact_id)', 'updated_at') }}
    from {{ landed('crm', 'contacts') }}
)
select
    contact_id,
    account_id,
    first_name,
    last_name,
    email,
    -- 10 digits are a US number written without its country code
    case when length(phone_digits) = 10 then '1' || phone_digits else phone_digits end as phone,
    country_code,
    created_at,
    updated_at,
    {{ is_deletion() }} or deleted_at is not null as _deleted
from ranked
where version_rank = 1

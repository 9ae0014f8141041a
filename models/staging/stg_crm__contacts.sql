-- CRM contacts: normalized email and phone, latest version per contact, soft-deleted ones dropped.
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
    from {{ source('crm', 'contacts') }}
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
    updated_at
from ranked
where {{ is_latest_live() }} and deleted_at is null

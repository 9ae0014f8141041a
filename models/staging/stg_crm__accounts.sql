-- CRM accounts: tidy names and country codes, keep the latest version of each account.
with ranked as (
    select
        account_id,
        trim(name) as account_name,
        nullif(trim(industry), '') as industry,
        nullif(upper(trim(country)), '') as country_code,
        created_at,
        updated_at,
        _ssot_op,
        row_number() over (
            partition by account_id order by _ssot_loaded_at desc, updated_at desc
        ) as version_rank
    from {{ source('crm', 'accounts') }}
)
select account_id, account_name, industry, country_code, created_at, updated_at
from ranked
where version_rank = 1 and _ssot_op = 'upsert'

-- CRM accounts: tidy names and country codes, keep the latest version of each account.
{{ config(materialized='incremental', unique_key='account_id', deleted_flag='_deleted') }}
with ranked as (
    select
        account_id,
        trim(name) as account_name,
        nullif(trim(industry), '') as industry,
        nullif(upper(trim(country)), '') as country_code,
        created_at,
        updated_at,
        _ssot_op,
        {{ version_rank('account_id', 'updated_at') }}
    from {{ landed('crm', 'accounts') }}
)
select account_id, account_name, industry, country_code, created_at, updated_at, {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

-- Every live person record from the CRM and the shop with the key of the real person it belongs to.
-- Matching rule (deterministic): records with the same normalized email are one person; a
-- record without an email joins the person whose record has the same normalized phone; a
-- record with neither stays a person of its own.
{{ config(materialized='table') }}
with records as (
    select 'crm' as source_system, contact_id as record_id, email, phone,
           first_name, last_name, country_code, created_at, updated_at
    from {{ ref('stg_crm__contacts') }}
    union all
    select 'shop' as source_system, cast(customer_id as varchar) as record_id, email, phone,
           first_name, last_name, cast(null as varchar) as country_code, created_at, updated_at
    from {{ ref('stg_shop__customers') }}
),
email_by_phone as (
    select phone, min(email) as email
    from records
    where email is not null and phone is not null
    group by phone
),
keyed as (
    select
        r.*,
        coalesce(
            r.email, p.email, 'phone:' || r.phone, 'record:' || r.source_system || ':' || r.record_id
        ) as person_key
    from records as r
    -- an equi-join (one row per phone), so it is a hash join; coalesce prefers r.email anyway
    left join email_by_phone as p on p.phone = r.phone
)
select
    md5(person_key) as customer_key,
    source_system,
    record_id,
    email,
    phone,
    first_name,
    last_name,
    country_code,
    created_at,
    updated_at
from keyed

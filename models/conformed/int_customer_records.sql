-- Every live person record from the CRM and the shop with the key of the real person it belongs to.
-- Matching rule (deterministic): records with the same normalized email are one person; a
-- record without an email joins the person whose record has the same normalized phone; a
-- record with neither stays a person of its own.
-- Incrementally, a record's key can change only when a record sharing its phone changed (its
-- email or phone, or it came or went), so only those records are matched again.
{{ config(
    materialized='incremental',
    unique_key=['source_system', 'record_id'],
    deleted_flag='_deleted',
) }}
with
{% if is_incremental() %}
-- the records changed since the last build, as they were and as they are
changed as (
    select 'crm' as source_system, contact_id as record_id, phone
    from {{ changes('stg_crm__contacts') }}
    union all
    select 'shop' as source_system, cast(customer_id as varchar) as record_id, phone
    from {{ changes('stg_shop__customers') }}
),
touched_phones as (
    select distinct phone from changed where phone is not null
),
{% endif %}
-- incrementally, only the records that can be matched again: those changed, and those
-- sharing a phone with one (filtered here, so the query never holds every record)
records as (
    select 'crm' as source_system, contact_id as record_id, email, phone,
           first_name, last_name, country_code, created_at, updated_at
    from {{ ref('stg_crm__contacts') }}
    {% if is_incremental() -%}
    where phone in (select phone from touched_phones)
        or contact_id in (select record_id from changed where source_system = 'crm')
    {%- endif %}
    union all
    select 'shop' as source_system, cast(customer_id as varchar) as record_id, email, phone,
           first_name, last_name, cast(null as varchar) as country_code, created_at, updated_at
    from {{ ref('stg_shop__customers') }}
    {% if is_incremental() -%}
    where phone in (select phone from touched_phones)
        or customer_id in (select customer_id from {{ changes('stg_shop__customers') }})
    {%- endif %}
),
{% if is_incremental() %}
-- a record gone from its source is only in its change feed
affected as (
    select source_system, record_id from changed
    union
    select source_system, record_id from records
),
{% endif %}
email_by_phone as (
    select phone, min(email) as email
    from records
    where email is not null and phone is not null
    {% if is_incremental() %}and phone in (select phone from touched_phones){% endif %}
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
),
built as (
    select
        -- the person's surrogate key: 60 bits of the matching key's MD5 as a BIGINT (the same
        -- value on DuckDB and BigQuery). Joins, scans and hashes on an integer cost a fraction
        -- of those on 32-character text. Two persons with one key would be merged; with 60
        -- bits the chance is about 1 in 2.3 M for a million persons.
        cast('0x' || substr(md5(person_key), 1, 15) as bigint) as customer_key,
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
)
-- incrementally: every affected record, matched again, or deleted when gone from its source
{{ rows_or_deletions('built', ['source_system', 'record_id']) }}

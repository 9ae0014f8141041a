-- One row per real person across CRM and shop: the golden record.
-- Names come from the person's most recently updated record. Email is the person's one
-- normalized email (the match key); phone and country are the greatest value among the
-- person's records, so the choice is deterministic.
-- Incrementally, only the persons whose records changed since the last build are recomputed;
-- a person left without records is closed (deleted_flag).
{{ config(deleted_flag='_deleted') }}
with
{% if is_incremental() %}
affected as (
    select distinct customer_key from {{ changes('int_customer_records') }}
),
{% endif %}
records as ({{ affected_rows('int_customer_records', 'customer_key') }}),
ranked as (
    select
        *,
        row_number() over (
            partition by customer_key order by updated_at desc, source_system, record_id
        ) as recency
    from records
),
latest as (
    select customer_key, first_name, last_name from ranked where recency = 1
),
golden as (
    select
        k.customer_key,
        max(k.email) as email,
        max(k.phone) as phone,
        l.first_name,
        l.last_name,
        max(k.country_code) as country_code,
        count(*) filter (where k.source_system = 'crm') as crm_records,
        count(*) filter (where k.source_system = 'shop') as shop_records,
        min(k.created_at) as first_seen_at,
        max(k.updated_at) as updated_at
    from records as k
    join latest as l on l.customer_key = k.customer_key
    group by k.customer_key, l.first_name, l.last_name
),
-- the country's name comes from the `countries` seed
named as (
    select g.*, c.country_name
    from golden as g
    left join {{ ref('countries') }} as c on c.country_code = g.country_code
)
-- incrementally: every affected person, recomputed, or closed when no record is left
{{ rows_or_deletions('named', 'customer_key') }}

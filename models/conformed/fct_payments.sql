-- One row per payment, tied to its invoice, order and customer.
-- Incrementally, only the payments touched since the last build are recomputed: the payment,
-- its invoice, or its order's customer or status changed.
{{ config(materialized='incremental', unique_key='payment_id', deleted_flag='_deleted') }}
with
{% if is_incremental() %}
touched_invoices as (
    select invoice_id from {{ changes('stg_billing__invoices') }}
    union
    select invoice_id
    from {{ ref('stg_billing__invoices') }}
    where order_id in (
        select order_id from {{ changed_keys('fct_orders', 'order_id', ['customer_key', 'status']) }}
    )
),
{% endif %}
-- incrementally: the payments that changed or whose invoice did, found in one scan
payments as (
    select * from {{ ref('stg_billing__payments') }}
    {% if is_incremental() -%}
    where payment_id in (select payment_id from {{ changes('stg_billing__payments') }})
        or invoice_id in (select invoice_id from touched_invoices)
    {%- endif %}
),
{% if is_incremental() %}
affected as (
    -- a payment gone from staging is only in its change feed
    select payment_id from {{ changes('stg_billing__payments') }}
    union
    select payment_id from payments
),
{% endif %}
-- incrementally, only those payments' invoices and orders go into the joins (not 5 M rows each)
invoices as (
    select invoice_id, order_id from {{ ref('stg_billing__invoices') }}
    {% if is_incremental() -%}
    where invoice_id in (select invoice_id from payments)
    {%- endif %}
),
orders as (
    select order_id, customer_key, status from {{ ref('fct_orders') }}
    {% if is_incremental() -%}
    where order_id in (select order_id from invoices)
    {%- endif %}
),
built as (
    select
        p.payment_id,
        p.invoice_id,
        i.order_id,
        o.customer_key,
        o.status as order_status,
        p.amount,
        p.currency,
        p.paid_at,
        p.method
    from payments as p
    left join invoices as i on i.invoice_id = p.invoice_id
    left join orders as o on o.order_id = i.order_id
)
-- incrementally: every affected payment, recomputed, or deleted when it is gone
{{ rows_or_deletions('built', 'payment_id') }}

-- Invoices from the daily exports; a re-exported (corrected) invoice replaces the earlier one.
{{ config(materialized='incremental', unique_key='invoice_id', deleted_flag='_deleted') }}
with ranked as (
    select
        invoice_id,
        order_id,
        nullif(lower(trim(customer_email)), '') as customer_email,
        amount,
        upper(trim(currency)) as currency,
        issued_at,
        exported_at,
        _ssot_op,
        {{ version_rank('invoice_id', 'exported_at') }}
    from {{ landed('billing', 'invoices') }}
)
select invoice_id, order_id, customer_email, amount, currency, issued_at, exported_at, {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

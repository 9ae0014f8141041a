-- Payments from the daily exports (late rows included); one row per payment.
{{ config(materialized='incremental', unique_key='payment_id', deleted_flag='_deleted') }}
with ranked as (
    select
        payment_id,
        invoice_id,
        amount,
        upper(trim(currency)) as currency,
        paid_at,
        upper(trim(method)) as method,
        _ssot_op,
        {{ version_rank('payment_id', 'paid_at') }}
    from {{ landed('billing', 'payments') }}
)
select payment_id, invoice_id, amount, currency, paid_at, method, {{ is_deletion() }} as _deleted
from ranked
where version_rank = 1

-- Payments from the daily exports (late rows included); one row per payment.
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
    from {{ source('billing', 'payments') }}
)
select payment_id, invoice_id, amount, currency, paid_at, method
from ranked
where {{ is_latest_live() }}

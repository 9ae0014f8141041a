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
        row_number() over (
            partition by payment_id order by _ssot_loaded_at desc, paid_at desc
        ) as version_rank
    from {{ source('billing', 'payments') }}
)
select payment_id, invoice_id, amount, currency, paid_at, method
from ranked
where version_rank = 1 and _ssot_op = 'upsert'

-- Invoices from the daily exports; a re-exported (corrected) invoice replaces the earlier one.
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
        row_number() over (
            partition by invoice_id order by _ssot_loaded_at desc, exported_at desc
        ) as version_rank
    from {{ source('billing', 'invoices') }}
)
select invoice_id, order_id, customer_email, amount, currency, issued_at, exported_at
from ranked
where version_rank = 1 and _ssot_op = 'upsert'

-- A singular data test (as in dbt): it selects the rows that break the rule; none may exist.
-- Every order's total is the sum of its lines, to the cent.
with line_sums as (
    select order_id, sum(line_amount) as lines_total
    from {{ ref('stg_shop__order_lines') }}
    group by order_id
)
select o.order_id, o.order_total, coalesce(l.lines_total, 0) as lines_total
from {{ ref('fct_orders') }} as o
left join line_sums as l on l.order_id = o.order_id
where o.order_total <> coalesce(l.lines_total, 0)

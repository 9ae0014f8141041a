-- A singular data test (as in dbt): it selects the rows that break the rule; none may exist.
-- Every order's total is the sum of its lines, to the cent.
-- Auditing an incremental build of fct_orders, it checks only the orders that build wrote
-- (written('fct_orders')): fct_orders recomputes every order whose lines changed, and the
-- other orders passed when they were written. A whole build checks every order.
with orders as (
    select order_id, order_total
    {% if is_incremental() -%}
    from {{ written('fct_orders') }}
    {%- else -%}
    from {{ ref('fct_orders') }}
    {%- endif %}
),
line_sums as (
    select order_id, sum(line_amount) as lines_total
    from {{ ref('stg_shop__order_lines') }}
    {% if is_incremental() -%}
    where order_id in (select order_id from orders)
    {%- endif %}
    group by order_id
)
select o.order_id, o.order_total, coalesce(l.lines_total, 0) as lines_total
from orders as o
left join line_sums as l on l.order_id = o.order_id
where o.order_total <> coalesce(l.lines_total, 0)

-- No two people share a customer key. The key is 60 bits of the MD5 of a person's matching
-- key (int_customer_records), and by the matching rule every record of one person that has an
-- email has the same one: two emails under one key are two people whose keys collided (about
-- 1 in 2.3 M for a million persons), silently merged everywhere downstream.
-- Auditing an incremental build, it checks only the keys that build wrote.
select customer_key, count(distinct email) as emails
from {{ ref('int_customer_records') }}
where email is not null
{% if is_incremental() -%}
    and customer_key in (select customer_key from {{ written('int_customer_records') }})
{%- endif %}
group by customer_key
having count(distinct email) > 1

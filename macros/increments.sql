{#-
  The keys of a model whose given columns changed since this model's last build, read from
  its change feed (changes('model')): a key that came or went, or whose columns now hold
  other values. A key whose columns ended as they were (or that came and went again) is left
  out, so a model that reads only a few columns of another recomputes only what those touch.

  A key's feed rows alternate: 'before' (the row as it was) and 'after' (the row as written).
  It existed before the window iff its first row is 'before', and exists now iff its last row
  is 'after'; equal counts of the two mean both or neither.
-#}
{% macro changed_keys(model, key, columns) -%}
(
    select {{ key }}
    from {{ changes(model) }}
    group by {{ key }}
    having count(*) filter (where _ssot_change = 'before')
            <> count(*) filter (where _ssot_change = 'after')
    {%- for column in columns %}
        {#- {{ column }} held more than one value (NULL counts as one) #}
        or count(distinct {{ column }}) + max(case when {{ column }} is null then 1 else 0 end) > 1
    {%- endfor %}
)
{%- endmacro %}

{#-
  A model's rows: all of them, or in an incremental build only those of the keys in
  `affected` (a CTE of the keys a change touches).
-#}
{% macro affected_rows(model, key, affected='affected') -%}
select * from {{ ref(model) }}
{%- if is_incremental() %}
where {{ key }} in (select {{ key }} from {{ affected }})
{%- endif %}
{%- endmacro %}

{#-
  What a model built from `rows` writes, with the `_deleted` flag (config deleted_flag):
  every row in a whole build; in an incremental build, the rows of each key in `affected`,
  or one row deleting the key when `rows` no longer has it. `keys`: a column or a list.
-#}
{% macro rows_or_deletions(rows, keys, affected='affected') -%}
{%- set keys = [keys] if keys is string else keys -%}
{% if is_incremental() -%}
select
    r.* replace ({% for k in keys %}a.{{ k }} as {{ k }}{% if not loop.last %}, {% endif %}{% endfor %}),
    r.{{ keys[0] }} is null as _deleted
from {{ affected }} as a
left join {{ rows }} as r
    on {% for k in keys %}r.{{ k }} = a.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
{%- else -%}
select *, false as _deleted from {{ rows }}
{%- endif %}
{%- endmacro %}

{#-
  Raw tables are append-only: every landed version of a row, plus tombstones for hard deletes.
  Staging keeps each key's latest version:

      with ranked as (
          select ..., _ssot_op, {{ version_rank('order_id', 'updated_at') }} from {{ source(...) }}
      )
      select ... from ranked where {{ is_latest_live() }}
-#}

{% macro version_rank(key, cursor=none) -%}
row_number() over (
    partition by {{ key }} order by _ssot_loaded_at desc{% if cursor %}, {{ cursor }} desc{% endif %}
) as version_rank
{%- endmacro %}

{% macro is_latest_live() -%}
version_rank = 1 and _ssot_op = 'upsert'
{%- endmacro %}

{#-
  Raw tables are append-only: every landed version of a row, plus tombstones for hard deletes.
  A staging model keeps each key's latest version, built incrementally from what landed since
  its last build (a key whose latest version is a tombstone is deleted):

      {{ config(materialized='incremental', unique_key='order_id', deleted_flag='_deleted') }}
      with ranked as (
          select ..., _ssot_op, {{ version_rank('order_id', 'updated_at') }}
          from {{ landed('shop', 'orders') }}
      )
      select ..., {{ is_deletion() }} as _deleted from ranked where version_rank = 1
-#}

{% macro version_rank(key, cursor=none) -%}
row_number() over (
    partition by {{ key }} order by _ssot_loaded_at desc{% if cursor %}, {{ cursor }} desc{% endif %}
) as version_rank
{%- endmacro %}

{#- The source table's rows: all of them, or in an incremental build those landed since. -#}
{% macro landed(source_name, table_name) -%}
{% if is_incremental() %}{{ changes(source_name, table_name) }}{% else %}{{ source(source_name, table_name) }}{% endif %}
{%- endmacro %}

{#- Whether a key's latest version deletes it (a tombstone). -#}
{% macro is_deletion() -%}
_ssot_op <> 'upsert'
{%- endmacro %}

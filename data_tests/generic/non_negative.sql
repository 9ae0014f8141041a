{#- A generic data test (as in dbt): the rows whose column is below zero fail. -#}
{% test non_negative(model, column_name) %}
select * from {{ model }} where {{ column_name }} < 0
{% endtest %}

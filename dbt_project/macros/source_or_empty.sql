{#-
  Every row of a source table that a later pipeline step writes (e.g. ml.district_clusters, written by
  `brecha clusters` after the prediction marts), or no row, with the given columns and types, while that step
  has not run yet on this warehouse. Lets a model be built in the same selection as the models it follows.
  columns: a list of [name, type] pairs, in the table's order.
-#}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if execute and load_relation(relation) is none -%}
    select
        {%- for name, type in columns %}
        null::{{ type }} as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    where false
    {%- else -%}
    select * from {{ relation }}
    {%- endif -%}
{%- endmacro %}

{#- Fails for every `field` value of `to` that is missing from `column_name` of the model (a mart that lost rows). -#}
{% test has_every_row_of(model, column_name, to, field) %}
select reference.{{ field }}
from {{ to }} as reference
where reference.{{ field }} not in (
    select tested.{{ column_name }}
    from {{ model }} as tested
    where tested.{{ column_name }} is not null
)
{% endtest %}

with

flagged as (
    select * from {{ ref('int_mobile_lines__flagged') }}
    where is_preferred and department_kind <> 'national_total'
),

final as (
    select
        department::varchar as department,
        department_code::varchar as department_code,
        year::integer as year,
        lines::bigint as lines,
        source_file::varchar as source_file,
        is_outlier::boolean as is_outlier,
        outlier_reason::varchar as outlier_reason
    from flagged
)

select * from final

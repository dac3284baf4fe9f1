with

source as (
    {{ latest_batch_rows('raw', 'osiptel__mobile_lines') }}
),

renamed as (
    select
        trim(departamento) as department,
        {{ name_key('departamento') }} as department_key,
        period,
        year(period) as period_year,
        granularity,
        lines,
        block,
        _source_file as source_file,
        lower(regexp_extract(_source_file, '\.([A-Za-z0-9]+)$', 1)) as source_format,
        _row_number as source_row_number,
        _loaded_at as loaded_at
    from source
)

select * from renamed

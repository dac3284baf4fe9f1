with

source as (
    {{ latest_batch_rows('raw', 'osiptel__mobile_line_share') }}
),

renamed as (
    select
        trim(departamento) as department,
        {{ name_key('departamento') }} as department_key,
        year,
        share_pct,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

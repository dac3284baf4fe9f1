with

source as (
    {{ latest_batch_rows('raw', 'osiptel__mobile_teledensity') }}
),

renamed as (
    select
        trim(departamento) as department,
        {{ name_key('departamento') }} as department_key,
        year,
        lines_per_100 as lines_per_100_inhabitants,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

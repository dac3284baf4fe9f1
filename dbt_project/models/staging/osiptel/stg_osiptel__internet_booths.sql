with

source as (
    {{ latest_batch_rows('raw', 'osiptel__internet_booths') }}
),

renamed as (
    select
        trim(departamento) as department,
        {{ name_key('departamento') }} as department_key,
        trim(operador) as operator,
        cabinas as booths,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

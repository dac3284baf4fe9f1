with

source as (
    {{ latest_batch_rows('raw', 'geo__department_boundaries') }}
),

renamed as (
    select
        lpad(trim(first_iddp::varchar), 2, '0') as department_code,
        trim(nombdep) as department,
        geometry,
        geometry is not null and geometry::varchar not in ('null', '') as has_geometry,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

with

source as (
    {{ latest_batch_rows('raw', 'geo__district_boundaries') }}
),

renamed as (
    select
        {{ to_ubigeo('iddist') }} as ubigeo,
        trim(nombdist) as district,
        trim(nombprov) as province,
        trim(nombdep) as department,
        geometry,
        geometry is not null and geometry::varchar not in ('null', '') as has_geometry,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

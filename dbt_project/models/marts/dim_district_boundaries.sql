with

boundaries as (
    select * from {{ ref('stg_geo__district_boundaries') }}
),

districts as (
    select * from {{ ref('dim_districts') }}
),

final as (
    select
        districts.ubigeo::varchar as ubigeo,
        districts.department_code::varchar as department_code,
        boundaries.geometry::varchar as geometry_geojson
    from boundaries
    inner join districts on boundaries.ubigeo = districts.ubigeo
    where boundaries.has_geometry
)

select * from final

with

boundaries as (
    select * from {{ ref('stg_geo__department_boundaries') }}
),

final as (
    select
        boundaries.department_code::varchar as department_code,
        boundaries.department::varchar as department,
        boundaries.geometry::varchar as geometry_geojson
    from boundaries
    where boundaries.has_geometry
)

select * from final

with

boundaries as (
    select * from {{ ref('stg_geo__district_boundaries') }}
    where has_geometry
),

districts as (
    select * from {{ ref('dim_districts') }}
),

crosswalk as (
    select * from {{ ref('district_boundary_crosswalk') }}
    where relation = 'recoded'
),

-- a district's own feature first; else the feature the crosswalk names under the district's older code
own as (
    select
        districts.ubigeo,
        districts.department_code,
        boundaries.ubigeo as boundary_ubigeo,
        'own' as boundary_source,
        boundaries.geometry
    from districts
    inner join boundaries on districts.ubigeo = boundaries.ubigeo
),

recoded as (
    select
        districts.ubigeo,
        districts.department_code,
        boundaries.ubigeo as boundary_ubigeo,
        'recoded' as boundary_source,
        boundaries.geometry
    from districts
    inner join crosswalk on districts.ubigeo = crosswalk.ubigeo
    inner join boundaries on crosswalk.boundary_ubigeo = boundaries.ubigeo
    where districts.ubigeo not in (select own.ubigeo from own)
),

drawn as (
    select * from own
    union all
    select * from recoded
),

final as (
    select
        ubigeo::varchar as ubigeo,
        department_code::varchar as department_code,
        boundary_ubigeo::varchar as boundary_ubigeo,
        boundary_source::varchar as boundary_source,
        geometry::varchar as geometry_geojson
    from drawn
)

select * from final

-- One row per populated centre (UBIGEO_CCPP) of the coverage file: a service is available in the
-- centre when ANY operator offers it (bool_or of the flags over operators).
with

coverage as (
    select * from {{ ref('stg_osiptel__mobile_coverage') }}
),

centres as (
    select
        populated_centre_code,
        min(ubigeo) as ubigeo,
        count(distinct operator) as operators,
        bool_or(has_2g) as has_2g,
        bool_or(has_3g) as has_3g,
        bool_or(has_4g) as has_4g,
        bool_or(has_5g) as has_5g,
        bool_or(greatest(has_3g, has_4g, has_5g)) as has_3g_plus,
        bool_or(greatest(has_2g, has_3g, has_4g, has_5g)) as has_any_mobile,
        bool_or(has_over_1_mbps) as has_over_1_mbps,
        sum(base_stations_2g) as base_stations_2g,
        sum(base_stations_3g) as base_stations_3g,
        sum(base_stations_4g) as base_stations_4g,
        sum(base_stations_5g) as base_stations_5g
    from coverage
    group by populated_centre_code
)

select * from centres

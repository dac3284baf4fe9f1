{#- Households: the one home of the households-from-population rule (every reader takes households_2025_estimated
  from here). No census 2017 household count by district, province or department was found in a citable public
  source (README, "Populations and households"), so persons per household is the dbt var persons_per_household,
  one national assumed figure, and households_source says so. -#}
{%- set persons_per_household = var('persons_per_household') -%}

with

reference as (
    select * from {{ ref('stg_inei__districts') }}
    where is_complete
),

census as (
    select * from {{ ref('stg_inei__census_indicators') }}
),

features as (
    select * from {{ ref('stg_geo__district_boundaries') }}
),

recoded as (
    select * from {{ ref('district_boundary_crosswalk') }}
    where relation = 'recoded'
),

-- a feature counts for its own code and, when the crosswalk says it carries a district's older code, for that one
boundaries as (
    select
        coalesce(recoded.ubigeo, features.ubigeo) as ubigeo,
        bool_or(features.has_geometry) as has_geometry
    from features
    left join recoded on features.ubigeo = recoded.boundary_ubigeo
    group by coalesce(recoded.ubigeo, features.ubigeo)
),

final as (
    select
        reference.ubigeo::varchar as ubigeo,
        reference.district::varchar as district,
        reference.province::varchar as province,
        reference.department::varchar as department,
        reference.department_code::varchar as department_code,
        reference.province_code::varchar as province_code,
        reference.capital::varchar as capital,
        reference.macro_region::varchar as macro_region,
        reference.latitude::double as latitude,
        reference.longitude::double as longitude,
        reference.altitude_m::double as altitude_m,
        reference.area_km2::double as area_km2,
        coalesce(census.population::double, reference.density_2020_per_km2 * reference.area_km2)::double
            as population,
        census.population::double as population_projected_2025,
        (
            case
                when census.population is not null then 'inei_projection_2025'
                else 'density_2020_x_area'
            end
        )::varchar as population_source,
        (
            coalesce(census.population::double, reference.density_2020_per_km2 * reference.area_km2)
            / nullif(reference.area_km2, 0)
        )::double as density_per_km2,
        {{ persons_per_household }}::double as persons_per_household_assumed,
        (
            coalesce(census.population::double, reference.density_2020_per_km2 * reference.area_km2)
            / {{ persons_per_household }}
        )::double as households_2025_estimated,
        'national_assumed_persons_per_household'::varchar as households_source,
        coalesce(boundaries.has_geometry, false)::boolean as has_boundary
    from reference
    left join census on reference.ubigeo = census.ubigeo
    left join boundaries on reference.ubigeo = boundaries.ubigeo
)

select * from final

with

districts as (
    select * from {{ ref('dim_districts') }}
),

census as (
    select * from {{ ref('stg_inei__census_indicators') }}
),

reference as (
    select * from {{ ref('stg_inei__districts') }}
),

centres as (
    select * from {{ ref('int_mobile_coverage__centres') }}
),

coverage as (
    select
        ubigeo,
        count(*) as populated_centres,
        100.0 * avg(has_4g::integer) as pct_centres_4g,
        100.0 * avg(has_3g_plus::integer) as pct_centres_3g_plus,
        100.0 * avg(has_any_mobile::integer) as pct_centres_any_mobile,
        100.0 * avg(has_over_1_mbps::integer) as pct_centres_over_1mbps,
        sum(base_stations_2g) as base_stations_2g,
        sum(base_stations_3g) as base_stations_3g,
        sum(base_stations_4g) as base_stations_4g,
        sum(base_stations_5g) as base_stations_5g
    from centres
    group by ubigeo
),

operators as (
    select
        ubigeo,
        count(distinct operator) as operators_present
    from {{ ref('stg_osiptel__mobile_coverage') }}
    group by ubigeo
),

fixed as (
    select * from {{ ref('fct_fixed_connections_quarterly') }}
),

fixed_landed as (
    select count(*) > 0 as has_fixed_file from {{ ref('stg_osiptel__fixed_connections') }}
),

latest_quarter as (
    select max(quarter_start) as quarter_start from fixed
),

fixed_latest as (
    select fixed.*
    from fixed
    inner join latest_quarter on fixed.quarter_start = latest_quarter.quarter_start
),

fixed_by_operator as (
    select
        ubigeo,
        operator,
        sum(connections) as connections
    from fixed_latest
    group by ubigeo, operator
),

operator_shares as (
    select
        ubigeo,
        100.0 * connections / nullif(sum(connections) over (partition by ubigeo), 0) as share_pct
    from fixed_by_operator
),

fixed_hhi as (
    -- Herfindahl-Hirschman index: sum of squared operator shares in percent (0..10,000)
    select
        ubigeo,
        sum(share_pct * share_pct) as fixed_hhi
    from operator_shares
    group by ubigeo
),

fixed_totals as (
    select
        ubigeo,
        sum(connections) as fixed_connections,
        sum(
            case
                when regexp_matches(upper(strip_accents(technology)), 'FIBRA|FTTH|FTTX|FTTB|OPTIC')
                    then connections
                else 0
            end
        ) as fibre_connections
    from fixed_latest
    group by ubigeo
),

survey as (
    select
        department_code,
        year as survey_year,
        internet_pct as survey_internet_pct_department
    from {{ ref('fct_department_adoption_yearly') }}
    qualify row_number() over (partition by department_code order by year desc) = 1
),

final as (
    select
        districts.ubigeo::varchar as ubigeo,
        coalesce(coverage.populated_centres, 0)::integer as populated_centres,
        coverage.pct_centres_4g::double as pct_centres_4g,
        coverage.pct_centres_3g_plus::double as pct_centres_3g_plus,
        coverage.pct_centres_any_mobile::double as pct_centres_any_mobile,
        coverage.pct_centres_over_1mbps::double as pct_centres_over_1mbps,
        coalesce(operators.operators_present, 0)::integer as operators_present,
        coverage.base_stations_2g::bigint as base_stations_2g,
        coverage.base_stations_3g::bigint as base_stations_3g,
        coverage.base_stations_4g::bigint as base_stations_4g,
        coverage.base_stations_5g::bigint as base_stations_5g,
        (
            coverage.base_stations_2g + coverage.base_stations_3g
            + coverage.base_stations_4g + coverage.base_stations_5g
        )::bigint as base_stations_total,
        (
            10000.0 * (
                coverage.base_stations_2g + coverage.base_stations_3g
                + coverage.base_stations_4g + coverage.base_stations_5g
            ) / nullif(districts.population, 0)
        )::double as base_stations_per_10k_pop,
        case when fixed_landed.has_fixed_file then coalesce(fixed_totals.fixed_connections, 0) end::bigint
            as fixed_connections,
        case
            when fixed_landed.has_fixed_file
                then
                    100.0 * coalesce(fixed_totals.fixed_connections, 0)
                    / nullif(districts.households_2025_estimated, 0)
        end::double as fixed_connections_per_100_households,
        (100.0 * fixed_totals.fibre_connections / nullif(fixed_totals.fixed_connections, 0))::double
            as fibre_share_pct,
        fixed_hhi.fixed_hhi::double as fixed_hhi,
        census.internet_pct::double as internet_pct,
        survey.survey_internet_pct_department::double as survey_internet_pct_department,
        survey.survey_year::integer as survey_year,
        coalesce(census.poverty_pct, reference.poverty_2018_pct)::double as poverty_pct,
        coalesce(census.extreme_poverty_pct, reference.extreme_poverty_2018_pct)::double as extreme_poverty_pct,
        census.electricity_pct::double as electricity_pct,
        census.water_pct::double as water_pct,
        census.sewage_pct::double as sewage_pct,
        coalesce(census.idh, reference.idh_2019)::double as idh,
        districts.population::double as population,
        districts.density_per_km2::double as density_per_km2,
        districts.altitude_m::double as altitude_m,
        -- the reference publishes the same index on a 0-1 scale (rounded census value = 100 x index)
        coalesce(census.food_vulnerability_pct, 100.0 * reference.food_vulnerability_index)::double
            as food_vulnerability_pct
    from districts
    cross join fixed_landed
    left join census on districts.ubigeo = census.ubigeo
    left join reference on districts.ubigeo = reference.ubigeo
    left join coverage on districts.ubigeo = coverage.ubigeo
    left join operators on districts.ubigeo = operators.ubigeo
    left join fixed_totals on districts.ubigeo = fixed_totals.ubigeo
    left join fixed_hhi on districts.ubigeo = fixed_hhi.ubigeo
    left join survey on districts.department_code = survey.department_code
)

select * from final

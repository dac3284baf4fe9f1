{#- Method: see mart_digital_divide_index.yml. Every component is oriented so that higher = worse. -#}
with

districts as (
    select * from {{ ref('dim_districts') }}
),

connectivity as (
    select * from {{ ref('fct_district_connectivity') }}
),

components as (
    select
        connectivity.ubigeo,
        -- infrastructure: unknown (null) when the district has no populated centre in the coverage file
        case when connectivity.populated_centres > 0 then 100 - connectivity.pct_centres_4g end as no_4g,
        case when connectivity.populated_centres > 0 then 100 - connectivity.pct_centres_any_mobile end
            as no_mobile,
        case when connectivity.populated_centres > 0 then 100 - connectivity.pct_centres_over_1mbps end
            as no_broadband_speed,
        case when connectivity.populated_centres > 0 then -connectivity.base_stations_per_10k_pop end
            as few_base_stations,
        case when connectivity.populated_centres > 0 then -connectivity.operators_present end
            as few_operators,
        -- adoption
        100 - connectivity.internet_pct as no_internet,
        -connectivity.fixed_connections_per_100_households as few_fixed_connections,
        -- socioeconomic
        connectivity.poverty_pct as poverty,
        connectivity.extreme_poverty_pct as extreme_poverty,
        1 - connectivity.idh as low_human_development,
        100 - connectivity.electricity_pct as no_electricity
    from connectivity
),

percentiles as (
    select
        ubigeo,
        {{ percentile_score('no_4g') }} as p_no_4g,
        {{ percentile_score('no_mobile') }} as p_no_mobile,
        {{ percentile_score('no_broadband_speed') }} as p_no_broadband_speed,
        {{ percentile_score('few_base_stations') }} as p_few_base_stations,
        {{ percentile_score('few_operators') }} as p_few_operators,
        {{ percentile_score('no_internet') }} as p_no_internet,
        {{ percentile_score('few_fixed_connections') }} as p_few_fixed_connections,
        {{ percentile_score('poverty') }} as p_poverty,
        {{ percentile_score('extreme_poverty') }} as p_extreme_poverty,
        {{ percentile_score('low_human_development') }} as p_low_human_development,
        {{ percentile_score('no_electricity') }} as p_no_electricity
    from components
),

sub_scores as (
    select
        ubigeo,
        list_avg([
            p_no_4g, p_no_mobile, p_no_broadband_speed, p_few_base_stations, p_few_operators
        ]) as infrastructure_score,
        list_avg([p_no_internet, p_few_fixed_connections]) as adoption_score,
        list_avg([p_poverty, p_extreme_poverty, p_low_human_development, p_no_electricity])
            as socioeconomic_score
    from percentiles
),

composite as (
    select
        *,
        list_avg([infrastructure_score, adoption_score, socioeconomic_score]) as raw_index
    from sub_scores
),

scaled as (
    select
        *,
        case
            when max(raw_index) over () > min(raw_index) over ()
                -- least(): the top district's 100 * x / x can round to 100.00000000000001
                then
                    least(
                        100.0, 100.0 * (raw_index - min(raw_index) over ())
                        / (max(raw_index) over () - min(raw_index) over ())
                    )
            when raw_index is not null then 50.0
        end as divide_index
    from composite
),

final as (
    select
        districts.ubigeo::varchar as ubigeo,
        districts.district::varchar as district,
        districts.province::varchar as province,
        districts.department::varchar as department,
        districts.department_code::varchar as department_code,
        scaled.infrastructure_score::double as infrastructure_score,
        scaled.adoption_score::double as adoption_score,
        scaled.socioeconomic_score::double as socioeconomic_score,
        scaled.divide_index::double as divide_index,
        row_number() over (order by scaled.divide_index desc nulls last, districts.ubigeo asc)::integer
            as national_rank,
        ntile(5) over (order by scaled.divide_index asc nulls first, districts.ubigeo desc)::integer
            as divide_quintile
    from districts
    inner join scaled on districts.ubigeo = scaled.ubigeo
)

select * from final

{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

priorities as (
    select * from {{ ref('mart_district_priorities') }}
),

clusters as (
    select * from {{ ref('fct_district_clusters') }}
),

wide as (
    select
        ubigeo,
        max(case when measure = 'internet_pct' then cluster end) as internet_pct_cluster,
        max(case when measure = 'divide_index' then cluster end) as divide_index_cluster,
        max(case when measure = 'gap_pp' then cluster end) as gap_pp_cluster,
        max(case when measure = 'internet_pct' then p_value end) as internet_pct_p_value,
        max(case when measure = 'divide_index' then p_value end) as divide_index_p_value,
        max(case when measure = 'gap_pp' then p_value end) as gap_pp_p_value,
        -- the graph of the divide index (every district has one); else of any measure the district has
        coalesce(
            max(case when measure = 'divide_index' then neighbour_source end),
            max(neighbour_source)
        ) as neighbour_source
    from clusters
    group by ubigeo
),

final as (
    select
        priorities.ubigeo::varchar as ubigeo,
        priorities.run_id::varchar as run_id,
        priorities.district::varchar as district,
        priorities.province::varchar as province,
        priorities.department::varchar as department,
        priorities.department_code::varchar as department_code,
        priorities.latitude::double as latitude,
        priorities.longitude::double as longitude,
        wide.internet_pct_cluster::varchar as internet_pct_cluster,
        wide.divide_index_cluster::varchar as divide_index_cluster,
        wide.gap_pp_cluster::varchar as gap_pp_cluster,
        wide.internet_pct_p_value::double as internet_pct_p_value,
        wide.divide_index_p_value::double as divide_index_p_value,
        wide.gap_pp_p_value::double as gap_pp_p_value,
        wide.neighbour_source::varchar as neighbour_source
    from priorities
    left join wide on priorities.ubigeo = wide.ubigeo
)

select * from final

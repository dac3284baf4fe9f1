{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

priorities as (
    select * from {{ ref('mart_district_priorities') }}
),

-- empty until `brecha clusters` has written the table on this warehouse
clusters as (
    select * from {{ ref('stg_ml__district_clusters') }}
),

final as (
    select
        clusters.ubigeo::varchar as ubigeo,
        clusters.measure::varchar as measure,
        clusters.run_id::varchar as run_id,
        priorities.department_code::varchar as department_code,
        clusters.value::double as value,
        clusters.standardized_value::double as standardized_value,
        clusters.spatial_lag::double as spatial_lag,
        clusters.local_i::double as local_i,
        clusters.p_value::double as p_value,
        clusters.quadrant::varchar as quadrant,
        clusters.cluster::varchar as cluster,
        clusters.n_neighbours::integer as n_neighbours,
        clusters.neighbour_source::varchar as neighbour_source,
        clusters.permutations::integer as permutations,
        clusters.seed::integer as seed
    from clusters
    -- the clusters of the run the priorities mart carries
    inner join priorities
        on
            clusters.ubigeo = priorities.ubigeo
            and clusters.run_id = priorities.run_id
)

select * from final

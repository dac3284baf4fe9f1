{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

priorities_run as (
    select distinct run_id from {{ ref('mart_district_priorities') }}
),

-- empty until `brecha clusters` has written the table on this warehouse
autocorrelation as (
    select * from {{ ref('stg_ml__spatial_autocorrelation') }}
),

final as (
    select
        autocorrelation.measure::varchar as measure,
        autocorrelation.run_id::varchar as run_id,
        autocorrelation.n_districts::integer as n_districts,
        autocorrelation.n_queen::integer as n_queen,
        autocorrelation.n_knn_no_boundary::integer as n_knn_no_boundary,
        autocorrelation.n_knn_island::integer as n_knn_island,
        autocorrelation.knn_k::integer as knn_k,
        autocorrelation.moran_i::double as moran_i,
        autocorrelation.expected_i::double as expected_i,
        autocorrelation.z_score::double as z_score,
        autocorrelation.p_value::double as p_value,
        autocorrelation.permutations::integer as permutations,
        autocorrelation.seed::integer as seed,
        autocorrelation.n_high_high::integer as n_high_high,
        autocorrelation.n_low_low::integer as n_low_low,
        autocorrelation.n_high_low::integer as n_high_low,
        autocorrelation.n_low_high::integer as n_low_high,
        autocorrelation.p_value_cutoff::double as p_value_cutoff,
        autocorrelation.n_significant::integer as n_significant,
        autocorrelation.n_significant_two_sided::integer as n_significant_two_sided,
        autocorrelation.n_significant_directed::integer as n_significant_directed
    from autocorrelation
    inner join priorities_run on autocorrelation.run_id = priorities_run.run_id
)

select * from final

{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

-- empty until `brecha clusters` has written the table on this warehouse
source as (
    {{ source_or_empty('ml_clusters', 'spatial_autocorrelation', [
        ['run_id', 'varchar'],
        ['measure', 'varchar'],
        ['n_districts', 'integer'],
        ['n_queen', 'integer'],
        ['n_knn_no_boundary', 'integer'],
        ['n_knn_island', 'integer'],
        ['knn_k', 'integer'],
        ['moran_i', 'double'],
        ['expected_i', 'double'],
        ['z_score', 'double'],
        ['p_value', 'double'],
        ['permutations', 'integer'],
        ['seed', 'integer'],
        ['n_high_high', 'integer'],
        ['n_low_low', 'integer'],
        ['n_high_low', 'integer'],
        ['n_low_high', 'integer'],
        ['p_value_cutoff', 'double'],
        ['n_significant', 'integer'],
        ['n_significant_two_sided', 'integer'],
        ['n_significant_directed', 'integer']
    ]) }}
),

renamed as (
    select
        run_id,
        measure,
        n_districts,
        n_queen,
        n_knn_no_boundary,
        n_knn_island,
        knn_k,
        moran_i,
        expected_i,
        z_score,
        p_value,
        permutations,
        seed,
        n_high_high,
        n_low_low,
        n_high_low,
        n_low_high,
        p_value_cutoff,
        n_significant,
        n_significant_two_sided,
        n_significant_directed
    from source
)

select * from renamed

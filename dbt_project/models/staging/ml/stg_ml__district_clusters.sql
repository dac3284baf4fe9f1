{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

-- empty until `brecha clusters` has written the table on this warehouse
source as (
    {{ source_or_empty('ml_clusters', 'district_clusters', [
        ['run_id', 'varchar'],
        ['ubigeo', 'varchar'],
        ['measure', 'varchar'],
        ['value', 'double'],
        ['standardized_value', 'double'],
        ['spatial_lag', 'double'],
        ['local_i', 'double'],
        ['p_value', 'double'],
        ['quadrant', 'varchar'],
        ['cluster', 'varchar'],
        ['n_neighbours', 'integer'],
        ['neighbour_source', 'varchar'],
        ['permutations', 'integer'],
        ['seed', 'integer']
    ]) }}
),

renamed as (
    select
        run_id,
        ubigeo,
        measure,
        value,
        standardized_value,
        spatial_lag,
        local_i,
        p_value,
        quadrant,
        cluster,
        n_neighbours,
        neighbour_source,
        permutations,
        seed
    from source
)

select * from renamed

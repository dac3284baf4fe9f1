{{ config(tags=['needs_predictions']) }}

with

source as (
    select * from {{ source('ml', 'segment_profiles') }}
),

renamed as (
    select
        run_id,
        segment_id,
        segment_label,
        n_districts,
        description,
        silhouette,
        mean_internet_pct
    from source
)

select * from renamed

{{ config(tags=['needs_predictions']) }}

with

source as (
    select * from {{ source('ml', 'district_predictions') }}
),

renamed as (
    select
        run_id,
        ubigeo,
        model_name,
        predicted_internet_pct,
        lower_90,
        upper_90,
        internet_pct,
        gap_pp,
        priority_score,
        priority_rank,
        is_out_of_fold,
        households_offline,
        shortfall_score,
        error_group,
        error_group_mae_pp,
        shortfall_weight,
        offline_priority_score,
        offline_priority_rank
    from source
)

select * from renamed

{{ config(tags=['needs_predictions']) }}

with

source as (
    select * from {{ source('ml', 'model_runs') }}
),

renamed as (
    select
        run_id,
        model_name,
        run_at,
        model_family,
        coalesce(selected, false) as is_selected,
        cv_r2,
        cv_mae,
        cv_rmse,
        interval_coverage,
        n_train,
        n_features
    from source
)

select * from renamed

{{ config(tags=['needs_predictions']) }}

with

runs as (
    select * from {{ ref('stg_ml__model_runs') }}
),

all_predictions as (
    select * from {{ ref('stg_ml__district_predictions') }}
),

latest_run as (
    select runs.run_id
    from runs
    where
        runs.run_id in (
            select distinct all_predictions.run_id
            from all_predictions
        )
    order by runs.run_at desc, runs.run_id desc
    limit 1
),

predictions as (
    select
        predictions.*,
        coalesce(runs.is_selected, false) as is_selected_model
    from all_predictions as predictions
    inner join latest_run on predictions.run_id = latest_run.run_id
    left join runs
        on
            predictions.run_id = runs.run_id
            and predictions.model_name = runs.model_name
    -- one model per district: the run's selected model (then the first by name)
    qualify row_number() over (
        partition by predictions.ubigeo
        order by coalesce(runs.is_selected, false) desc, predictions.model_name
    ) = 1
),

segments as (
    select
        segments.ubigeo,
        segments.segment_id,
        coalesce(segments.segment_label, profiles.segment_label) as segment_label
    from {{ ref('stg_ml__district_segments') }} as segments
    inner join latest_run on segments.run_id = latest_run.run_id
    left join {{ ref('stg_ml__segment_profiles') }} as profiles
        on
            segments.run_id = profiles.run_id
            and segments.segment_id = profiles.segment_id
),

districts as (
    select * from {{ ref('dim_districts') }}
),

connectivity as (
    select * from {{ ref('fct_district_connectivity') }}
),

divide as (
    select * from {{ ref('mart_digital_divide_index') }}
),

final as (
    select
        predictions.run_id::varchar as run_id,
        districts.ubigeo::varchar as ubigeo,
        districts.district::varchar as district,
        districts.province::varchar as province,
        districts.department::varchar as department,
        districts.department_code::varchar as department_code,
        districts.latitude::double as latitude,
        districts.longitude::double as longitude,
        districts.population::double as population,
        connectivity.internet_pct::double as internet_pct,
        divide.divide_index::double as divide_index,
        divide.national_rank::integer as national_rank,
        predictions.predicted_internet_pct::double as predicted_internet_pct,
        predictions.lower_90::double as lower_90,
        predictions.upper_90::double as upper_90,
        predictions.gap_pp::double as gap_pp,
        predictions.priority_rank::integer as priority_rank,
        segments.segment_id::integer as segment_id,
        segments.segment_label::varchar as segment_label,
        predictions.model_name::varchar as model_name,
        -- written by runs since the out-of-fold predictions; null for older runs
        predictions.is_out_of_fold::boolean as is_out_of_fold,
        predictions.households_offline::double as households_offline,
        predictions.shortfall_score::double as shortfall_score,
        predictions.priority_score::double as priority_score,
        -- the households-offline lens and the shortfall's weight (runs before the two lenses: null)
        predictions.offline_priority_score::double as offline_priority_score,
        predictions.offline_priority_rank::integer as offline_priority_rank,
        predictions.error_group::varchar as error_group,
        predictions.error_group_mae_pp::double as error_group_mae_pp,
        predictions.shortfall_weight::double as shortfall_weight
    from predictions
    inner join districts on predictions.ubigeo = districts.ubigeo
    left join connectivity on districts.ubigeo = connectivity.ubigeo
    left join divide on districts.ubigeo = divide.ubigeo
    left join segments on districts.ubigeo = segments.ubigeo
)

select * from final

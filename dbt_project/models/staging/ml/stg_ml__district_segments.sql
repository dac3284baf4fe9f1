{{ config(tags=['needs_predictions']) }}

with

source as (
    select * from {{ source('ml', 'district_segments') }}
),

renamed as (
    select
        run_id,
        ubigeo,
        segment_id,
        segment_label
    from source
)

select * from renamed

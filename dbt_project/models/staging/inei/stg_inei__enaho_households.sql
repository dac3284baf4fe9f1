with

source as (
    {{ latest_batch_rows('raw', 'inei__enaho_households') }}
),

renamed as (
    select
        anio as survey_year,
        mes as survey_month,
        trim(conglome) as conglomerate,
        trim(vivienda) as dwelling,
        trim(hogar) as household,
        {{ to_ubigeo('ubigeo') }} as ubigeo,
        left({{ to_ubigeo('ubigeo') }}, 2) as department_code,
        dominio as survey_domain,
        estrato as stratum,
        p1141 as has_fixed_phone,
        p1142 as has_mobile_phone,
        p1143 as has_cable_tv,
        p1144 as has_internet,
        p1145 as has_none_of_these,
        factor07 as expansion_weight,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

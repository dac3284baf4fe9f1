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
        -- the published 0/1 answers (landing rejects any other value) as booleans; null when not answered
        p1141::boolean as has_fixed_phone,
        p1142::boolean as has_mobile_phone,
        p1143::boolean as has_cable_tv,
        p1144::boolean as has_internet,
        p1145::boolean as has_none_of_these,
        factor07 as expansion_weight,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

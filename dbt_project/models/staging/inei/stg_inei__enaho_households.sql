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
        result as interview_result,
        -- RESULT 1 = completa; a file without the column (older extracts) is taken as all complete
        coalesce(result = 1, true) as is_complete_interview,
        -- the 2023 questionnaire: P1144 counts any internet access (members' mobile data included) from 2023
        case when anio >= 2023 then 'desde 2023' else 'hasta 2022' end as questionnaire,
        -- the published 0/1 answers (landing maps labels to codes and rejects any other value) as booleans
        p1141::boolean as has_fixed_phone,
        p1142::boolean as has_mobile_phone,
        p1143::boolean as has_cable_tv,
        p1144::boolean as has_internet,
        p1145::boolean as has_none_of_these,
        p114b1::boolean as has_fixed_internet_service,
        p114b2::boolean as has_mobile_postpaid_internet,
        p114b3::boolean as has_mobile_prepaid_internet,
        -- fixed internet: P1144 before 2023 (the household's connection), P114B1 from 2023 (not comparable:
        -- see fct_department_adoption_yearly)
        case when anio >= 2023 then p114b1::boolean else p1144::boolean end as has_fixed_internet,
        factor07 as expansion_weight,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

{#-
  Every department name published in the OSIPTEL department tables (lines, line share, teledensity,
  internet booths) mapped to an INEI department code. Pseudo-departments are recognised by their name
  key first ('Lima y Callao' = Lima + Callao before 2013, 'Sin LAC' = lines without a location area
  code, 'Total Perú' = national total); every other name takes the reference department with the
  highest name_similarity in dim_departments (macro best_department_match), when it reaches var('name_match_threshold').
-#}
{%- set threshold = var('name_match_threshold') -%}

with

published_names as (
    select
        department,
        department_key
    from {{ ref('stg_osiptel__mobile_lines') }}
    union all
    select
        department,
        department_key
    from {{ ref('stg_osiptel__mobile_line_share') }}
    union all
    select
        department,
        department_key
    from {{ ref('stg_osiptel__mobile_teledensity') }}
    union all
    select
        department,
        department_key
    from {{ ref('stg_osiptel__internet_booths') }}
),

distinct_names as (
    select
        department_key,
        min(department) as published_example,
        {{ name_phonetic_key('min(department)') }} as department_phonetic
    from published_names
    where department_key is not null
    group by department_key
),

pseudo_departments as (
    select
        'LIMA Y CALLAO' as department_key,
        'aggregate' as department_kind,
        ['07', '15'] as member_department_codes
    union all
    select
        'SIN LAC' as department_key,
        'unassigned' as department_kind,
        []::varchar[] as member_department_codes
    union all
    select
        'TOTAL PERU' as department_key,
        'national_total' as department_kind,
        []::varchar[] as member_department_codes
),

best as (
    {{ best_department_match('distinct_names') }}
),

final as (
    select
        distinct_names.department_key,
        distinct_names.published_example,
        case
            when pseudo_departments.department_key is not null then null
            when best.match_score >= {{ threshold }} then best.department_code
        end as department_code,
        case
            when pseudo_departments.department_key is not null then pseudo_departments.department_kind
            when best.match_score >= {{ threshold }} then 'department'
            else 'unmatched'
        end as department_kind,
        case
            when pseudo_departments.department_key is not null then pseudo_departments.member_department_codes
            when best.match_score >= {{ threshold }} then [best.department_code]
            else []::varchar[]
        end as member_department_codes,
        best.candidate_department,
        best.match_score
    from distinct_names
    left join pseudo_departments
        on
            distinct_names.department_key = pseudo_departments.department_key
            -- 'Otros sin LAC' and similar variants of lines without a location area code
            or (
                pseudo_departments.department_key = 'SIN LAC'
                and distinct_names.department_key like '%SIN LAC%'
            )
    left join best
        on distinct_names.department_key = best.department_key
)

select * from final

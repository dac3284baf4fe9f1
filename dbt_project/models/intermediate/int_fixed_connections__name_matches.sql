{#-
  Matches the place names of the PUNKU fixed-connections file to ubigeo, level by level:
  department among the reference departments (dim_departments, macro best_department_match), province
  within the matched department, district within the matched province. At each level the candidate with the highest similarity wins (ties go
  to the lowest code): the better of the Jaro-Winkler similarity of the name keys (no accents, upper
  case, single spaces) and of their spelling-tolerant keys (macro name_phonetic_key: HUA/WA, QUI/KI,
  Z/S, Y/I, CC/C, LL/L, DE dropped, parenthesised parts dropped). A name is
  matched when every level reaches var('name_match_threshold').
-#}
{%- set threshold = var('name_match_threshold') -%}

with

published_names as (
    -- one row per name key triple; several published spellings of a triple keep the first
    select
        department_key,
        province_key,
        district_key,
        min(department) as department,
        min(province) as province,
        min(district) as district,
        {{ name_phonetic_key('min(department)') }} as department_phonetic,
        {{ name_phonetic_key('min(province)') }} as province_phonetic,
        {{ name_phonetic_key('min(district)') }} as district_phonetic
    from {{ ref('stg_osiptel__fixed_connections') }}
    group by department_key, province_key, district_key
),

published_departments as (
    select
        department_key,
        min(department_phonetic) as department_phonetic
    from published_names
    group by department_key
),

published_provinces as (
    select
        department_key,
        province_key,
        min(province_phonetic) as province_phonetic
    from published_names
    group by department_key, province_key
),

reference_districts as (
    select
        ubigeo,
        department_code,
        province_code,
        province,
        district,
        province_key,
        district_key,
        {{ name_phonetic_key('province') }} as province_phonetic,
        {{ name_phonetic_key('district') }} as district_phonetic
    from {{ ref('stg_inei__districts') }}
),

reference_provinces as (
    select
        province_code,
        min(department_code) as department_code,
        min(province) as province,
        min(province_key) as province_key,
        min(province_phonetic) as province_phonetic
    from reference_districts
    group by province_code
),

department_matches as (
    {{ best_department_match('published_departments') }}
),

province_candidates as (
    select
        names.department_key,
        names.province_key,
        provs.province_code,
        provs.province as candidate_province,
        provs.province_key as candidate_province_key,
        {{ name_similarity(
            'names.province_key', 'provs.province_key',
            'names.province_phonetic', 'provs.province_phonetic'
        ) }} as province_score
    from published_provinces as names
    inner join department_matches
        on names.department_key = department_matches.department_key
    inner join reference_provinces as provs
        on department_matches.department_code = provs.department_code
),

province_matches as (
    select * from province_candidates
    qualify row_number() over (
        partition by department_key, province_key order by province_score desc, province_code asc
    ) = 1
),

district_candidates as (
    select
        names.department_key,
        names.province_key,
        names.district_key,
        dists.ubigeo,
        dists.district as candidate_district,
        dists.district_key as candidate_district_key,
        {{ name_similarity(
            'names.district_key', 'dists.district_key',
            'names.district_phonetic', 'dists.district_phonetic'
        ) }} as district_score
    from published_names as names
    inner join province_matches
        on
            names.department_key = province_matches.department_key
            and names.province_key = province_matches.province_key
    inner join reference_districts as dists
        on province_matches.province_code = dists.province_code
),

district_matches as (
    select * from district_candidates
    qualify row_number() over (
        partition by department_key, province_key, district_key order by district_score desc, ubigeo asc
    ) = 1
),

scored as (
    select
        published_names.department,
        published_names.province,
        published_names.district,
        published_names.department_key,
        published_names.province_key,
        published_names.district_key,
        department_matches.department_code as candidate_department_code,
        department_matches.candidate_department,
        department_matches.candidate_department_key,
        department_matches.match_score as department_score,
        province_matches.province_code as candidate_province_code,
        province_matches.candidate_province,
        province_matches.candidate_province_key,
        province_matches.province_score,
        district_matches.ubigeo as candidate_ubigeo,
        district_matches.candidate_district,
        district_matches.candidate_district_key,
        district_matches.district_score
    from published_names
    left join department_matches
        on published_names.department_key = department_matches.department_key
    left join province_matches
        on
            published_names.department_key = province_matches.department_key
            and published_names.province_key = province_matches.province_key
    left join district_matches
        on
            published_names.department_key = district_matches.department_key
            and published_names.province_key = district_matches.province_key
            and published_names.district_key = district_matches.district_key
),

final as (
    select
        *,
        least(department_score, province_score, district_score) as match_score,
        coalesce(
            department_score >= {{ threshold }}
            and province_score >= {{ threshold }}
            and district_score >= {{ threshold }},
            false
        ) as is_matched,
        case
            when coalesce(department_score, 0) < {{ threshold }} then 'department'
            when coalesce(province_score, 0) < {{ threshold }} then 'province'
            when coalesce(district_score, 0) < {{ threshold }} then 'district'
        end as failed_level
    from scored
)

select
    department,
    province,
    district,
    department_key,
    province_key,
    district_key,
    case when is_matched then candidate_ubigeo end as ubigeo,
    is_matched,
    case
        when not is_matched then 'unmatched'
        when
            department_key = candidate_department_key
            and province_key = candidate_province_key
            and district_key = candidate_district_key
            then 'exact'
        else 'fuzzy'
    end as match_method,
    match_score,
    failed_level,
    candidate_ubigeo,
    candidate_department,
    candidate_province,
    candidate_district,
    department_score,
    province_score,
    district_score
from final

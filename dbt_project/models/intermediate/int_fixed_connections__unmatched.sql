with

matches as (
    select * from {{ ref('int_fixed_connections__name_matches') }}
),

connections as (
    select
        department_key,
        province_key,
        district_key,
        count(*) as source_rows,
        sum(connections) as connections
    from {{ ref('stg_osiptel__fixed_connections') }}
    group by department_key, province_key, district_key
),

unmatched as (
    select
        matches.department,
        matches.province,
        matches.district,
        matches.failed_level,
        case matches.failed_level
            when 'department' then matches.candidate_department
            when 'province' then matches.candidate_department || ' / ' || matches.candidate_province
            else
                matches.candidate_department || ' / ' || matches.candidate_province
                || ' / ' || matches.candidate_district
        end as best_candidate,
        case matches.failed_level
            when 'department' then matches.department_score
            when 'province' then matches.province_score
            else matches.district_score
        end as best_score,
        matches.candidate_ubigeo as best_candidate_ubigeo,
        connections.source_rows,
        connections.connections
    from matches
    left join connections
        on
            matches.department_key = connections.department_key
            and matches.province_key = connections.province_key
            and matches.district_key = connections.district_key
    where not matches.is_matched
)

select * from unmatched

with

connections as (
    select * from {{ ref('stg_osiptel__fixed_connections') }}
),

matches as (
    select * from {{ ref('int_fixed_connections__name_matches') }}
    where is_matched
),

districts as (
    select
        ubigeo,
        department_code
    from {{ ref('dim_districts') }}
),

located as (
    select
        matches.ubigeo,
        districts.department_code,
        connections.quarter,
        connections.quarter_start,
        connections.year,
        connections.quarter_number,
        connections.technology,
        connections.operator,
        connections.connections
    from connections
    inner join matches
        on
            connections.department_key = matches.department_key
            and connections.province_key = matches.province_key
            and connections.district_key = matches.district_key
    inner join districts on matches.ubigeo = districts.ubigeo
),

final as (
    select
        ubigeo::varchar as ubigeo,
        department_code::varchar as department_code,
        quarter::varchar as quarter,
        quarter_start::date as quarter_start,
        year::integer as year,
        quarter_number::integer as quarter_number,
        technology::varchar as technology,
        operator::varchar as operator,
        sum(connections)::bigint as connections
    from located
    group by ubigeo, department_code, quarter, quarter_start, year, quarter_number, technology, operator
)

select * from final

{#-
  Connections are a stock at the end of each period, not a flow: a quarter is the stock of its last
  month in the data (March, June, September, December), never the sum of its months. When the data has
  fewer than three months of a quarter (the latest quarter while it is under way, or a month missing from
  the download), the quarter takes the last month it has and is flagged (is_quarter_incomplete).
  Quarterly periods are taken as they are.
-#}
with

connections as (
    select * from {{ ref('stg_osiptel__fixed_connections') }}
),

months_in_quarter as (
    -- which months of each quarter the data holds (the same for every district: the publication's months)
    select
        quarter,
        count(distinct period_month) as months_reported,
        max(period_month) as closing_month
    from connections
    group by quarter
),

closing as (
    select connections.*
    from connections
    inner join months_in_quarter on connections.quarter = months_in_quarter.quarter
    where connections.period_month is null or connections.period_month = months_in_quarter.closing_month
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
        closing.quarter,
        closing.quarter_start,
        closing.year,
        closing.quarter_number,
        closing.period_month,
        closing.technology,
        closing.operator,
        closing.connections
    from closing
    inner join matches
        on
            closing.department_key = matches.department_key
            and closing.province_key = matches.province_key
            and closing.district_key = matches.district_key
    inner join districts on matches.ubigeo = districts.ubigeo
),

final as (
    select
        located.ubigeo::varchar as ubigeo,
        located.department_code::varchar as department_code,
        located.quarter::varchar as quarter,
        located.quarter_start::date as quarter_start,
        located.year::integer as year,
        located.quarter_number::integer as quarter_number,
        located.technology::varchar as technology,
        located.operator::varchar as operator,
        sum(located.connections)::bigint as connections,
        max(located.period_month)::integer as closing_month,
        coalesce(max(months_in_quarter.months_reported), 0)::integer as months_reported,
        (max(months_in_quarter.months_reported) between 1 and 2)::boolean as is_quarter_incomplete
    from located
    left join months_in_quarter on located.quarter = months_in_quarter.quarter
    group by
        located.ubigeo, located.department_code, located.quarter, located.quarter_start, located.year,
        located.quarter_number, located.technology, located.operator
)

select * from final

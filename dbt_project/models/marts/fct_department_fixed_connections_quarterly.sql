{#-
  PUNKU fixed connections per department and quarter, and per 100 households (households = the sum of
  dim_districts.households_2025_estimated, the households fct_district_connectivity uses), for the trend panels beside
  the ENAHO survey series. A quarter is the stock of its closing month (fct_fixed_connections_quarterly).
-#}

with

quarterly as (
    select * from {{ ref('fct_fixed_connections_quarterly') }}
),

departments as (
    select
        department_code,
        department,
        sum(households_2025_estimated) as households_estimate
    from {{ ref('dim_districts') }}
    group by department_code, department
),

totals as (
    select
        department_code,
        quarter,
        quarter_start,
        sum(connections) as connections,
        bool_or(is_quarter_incomplete) as is_quarter_incomplete
    from quarterly
    group by department_code, quarter, quarter_start
),

final as (
    select
        totals.department_code::varchar as department_code,
        departments.department::varchar as department,
        totals.quarter::varchar as quarter,
        totals.quarter_start::date as quarter_start,
        totals.connections::bigint as connections,
        departments.households_estimate::double as households_estimate,
        (100.0 * totals.connections / nullif(departments.households_estimate, 0))::double
            as connections_per_100_households,
        totals.is_quarter_incomplete::boolean as is_quarter_incomplete
    from totals
    inner join departments on totals.department_code = departments.department_code
)

select * from final

with

estimates as (
    select * from {{ ref('int_enaho__department_year') }}
),

departments as (
    select * from {{ ref('dim_departments') }}
),

first_new_year as (
    -- the first survey year of the 2023 questionnaire present in the data (null when there is none)
    select min(survey_year) as year from estimates
    where survey_year >= 2023
),

final as (
    select
        estimates.department_code::varchar as department_code,
        departments.department::varchar as department,
        estimates.survey_year::integer as year,
        (case when estimates.survey_year >= 2023 then 'desde 2023' else 'hasta 2022' end)::varchar
            as questionnaire,
        coalesce(estimates.survey_year = first_new_year.year, false)::boolean as is_series_break,
        estimates.households_sampled::bigint as households_sampled,
        estimates.households_incomplete::bigint as households_incomplete,
        estimates.households_weighted::double as households_weighted,
        estimates.internet_pct::double as internet_pct,
        estimates.internet_se::double as internet_se,
        estimates.fixed_internet_pct::double as fixed_internet_pct,
        estimates.fixed_internet_se::double as fixed_internet_se,
        estimates.mobile_pct::double as mobile_pct,
        estimates.mobile_se::double as mobile_se,
        estimates.fixed_phone_pct::double as fixed_phone_pct,
        estimates.fixed_phone_se::double as fixed_phone_se,
        estimates.cable_tv_pct::double as cable_tv_pct,
        estimates.cable_tv_se::double as cable_tv_se
    from estimates
    cross join first_new_year
    left join departments on estimates.department_code = departments.department_code
)

select * from final

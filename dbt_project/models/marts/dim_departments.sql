with

districts as (
    select * from {{ ref('stg_inei__districts') }}
),

departments as (
    select
        department_code,
        min(department) as department,
        min(department_key) as department_key,
        count(distinct province_code) as n_provinces,
        count(*) as n_districts
    from districts
    group by department_code
),

final as (
    select
        department_code::varchar as department_code,
        department::varchar as department,
        department_key::varchar as department_key,
        {{ name_phonetic_key('department') }}::varchar as department_phonetic,
        n_provinces::integer as n_provinces,
        n_districts::integer as n_districts
    from departments
)

select * from final

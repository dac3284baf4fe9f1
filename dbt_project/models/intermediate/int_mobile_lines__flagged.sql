{#-
  Yearly mobile lines in service per published department, source file and year, with outlier flags.
  A row is an outlier when its lines exceed the national total of that year (the 'Total Perú' rows
  landed in the same batch) or when its lines per inhabitant exceed var('max_lines_per_inhabitant')
  (population 2020 of the reference: density x area, summed over the member departments of a
  pseudo-department such as 'Lima y Callao'). Flagged rows stay here with their reason.
-#}
{%- set max_per_inhabitant = var('max_lines_per_inhabitant') -%}

with

yearly as (
    select *
    from {{ ref('stg_osiptel__mobile_lines') }}
    where granularity = 'year' and lines is not null
),

names as (
    select * from {{ ref('int_osiptel__department_names') }}
),

department_population as (
    select
        department_code,
        population_2020
    from {{ ref('stg_inei__departments') }}
),

district_population as (
    -- fallback when the department reference did not land: the census file's population (INEI's 2025
    -- projection) summed by department
    select
        left(ubigeo, 2) as department_code,
        sum(population) as population
    from {{ ref('stg_inei__census_indicators') }}
    group by left(ubigeo, 2)
),

national_totals as (
    select
        yearly.period_year,
        max(yearly.lines) as national_lines
    from yearly
    inner join names on yearly.department_key = names.department_key
    where names.department_kind = 'national_total'
    group by yearly.period_year
),

mapped as (
    select
        yearly.department,
        yearly.department_key,
        names.department_code,
        names.department_kind,
        names.member_department_codes,
        yearly.period_year as year,
        yearly.lines,
        yearly.source_file,
        yearly.source_format,
        yearly.block,
        yearly.source_row_number
    from yearly
    left join names on yearly.department_key = names.department_key
),

name_members as (
    select
        department_key,
        unnest(member_department_codes) as department_code
    from names
),

name_population as (
    select
        name_members.department_key,
        sum(coalesce(department_population.population_2020, district_population.population)) as population
    from name_members
    left join department_population on name_members.department_code = department_population.department_code
    left join district_population on name_members.department_code = district_population.department_code
    group by name_members.department_key
),

with_population as (
    select
        mapped.*,
        name_population.population
    from mapped
    left join name_population on mapped.department_key = name_population.department_key
),

checked as (
    select
        with_population.*,
        national_totals.national_lines,
        with_population.lines / nullif(with_population.population, 0) as lines_per_inhabitant,
        with_population.department_kind <> 'national_total'
        and with_population.lines > national_totals.national_lines as exceeds_national_total,
        with_population.lines / nullif(with_population.population, 0) > {{ max_per_inhabitant }}
            as exceeds_per_inhabitant_bound
    from with_population
    left join national_totals on with_population.year = national_totals.period_year
),

flagged as (
    select
        *,
        coalesce(exceeds_national_total, false) or coalesce(exceeds_per_inhabitant_bound, false) as is_outlier,
        nullif(concat_ws(
            '; ',
            case
                when exceeds_national_total
                    then
                        'lines (' || lines::varchar || ') exceed the national total of '
                        || year::varchar || ' (' || national_lines::varchar || ')'
            end,
            case
                when exceeds_per_inhabitant_bound
                    then
                        round(lines_per_inhabitant, 1)::varchar || ' lines per inhabitant, above the bound of '
                        || '{{ max_per_inhabitant }}'
            end
        ), '') as outlier_reason
    from checked
),

ranked as (
    -- one preferred row per department and year: unflagged before flagged, the official xlsx before
    -- the hand-made csv, then the earliest block and row
    select
        *,
        row_number() over (
            partition by coalesce(department_code, department_key), year
            order by
                is_outlier,
                case source_format when 'xlsx' then 0 when 'csv' then 1 else 2 end,
                block,
                source_file,
                source_row_number
        ) = 1 as is_preferred
    from flagged
)

select * from ranked

{#-
  PUNKU publishes monthly stocks (2024-01, an Excel date such as 2024-01-31, or a month name such as
  ENE-2024 / Enero 2024); older extracts give quarters (2015-T1, 2015T1, 2015-Q1). period_month is the
  month of a monthly period (null for a quarter); the quarterly mart keeps the last month of each quarter.
-#}
{%- set months = ['ENE', 'FEB', 'MAR', 'ABR', 'MAY', 'JUN', 'JUL', 'AGO', 'SET', 'OCT', 'NOV', 'DIC'] -%}

with

source as (
    {{ latest_batch_rows('raw', 'osiptel__fixed_connections') }}
),

periods as (
    select
        *,
        upper(strip_accents(regexp_replace(periodo, '\s+', '', 'g'))) as period_clean
    from source
),

parsed as (
    select
        *,
        case
            -- an Excel date serial (a date cell read as text): days since 1899-12-30
            when regexp_matches(period_clean, '^\d{5}(\.0+)?$')
                then year(date '1899-12-30' + cast(floor(cast(period_clean as double)) as integer))
            when regexp_matches(period_clean, '^\d{1,2}[/-]\d{4}$')
                then cast(regexp_extract(period_clean, '(\d{4})$', 1) as integer)
            else cast(regexp_extract(period_clean, '(\d{4})', 1) as integer)
        end as period_year,
        case
            when regexp_matches(period_clean, '^\d{5}(\.0+)?$')
                then month(date '1899-12-30' + cast(floor(cast(period_clean as double)) as integer))
            -- 2024-01, 202401, 2024-01-31, 2024/01
            when regexp_matches(period_clean, '^\d{4}[-/]?\d{1,2}([-/]\d{1,2}([T ].*)?)?$')
                then cast(regexp_extract(period_clean, '^\d{4}[-/]?(\d{1,2})', 1) as integer)
            -- 01/2024, 1-2024
            when regexp_matches(period_clean, '^\d{1,2}[/-]\d{4}$')
                then cast(regexp_extract(period_clean, '^(\d{1,2})', 1) as integer)
            {%- for m in months %}
                when regexp_matches(period_clean, '{{ m }}') and not regexp_matches(period_clean, '\d{4}-?[TQ][1-4]')
                    then {{ loop.index }}
            {%- endfor %}
            when regexp_matches(period_clean, 'SEP') then 9
        end as period_month,
        case
            -- 2015-T1, 2015T1, 2015-Q1, 2015Q1 (T = trimestre)
            when regexp_matches(period_clean, '^\d{4}-?[TQ][1-4]$')
                then cast(regexp_extract(period_clean, '[TQ]([1-4])$', 1) as integer)
        end as period_quarter
    from periods
),

quartered as (
    select
        *,
        coalesce(period_quarter, (period_month - 1) // 3 + 1) as quarter_of_period
    from parsed
),

renamed as (
    select
        trim(periodo) as period_raw,
        period_year as year,
        quarter_of_period as quarter_number,
        period_month,
        cast(period_year as varchar) || '-Q' || cast(quarter_of_period as varchar) as quarter,
        make_date(period_year, (quarter_of_period - 1) * 3 + 1, 1) as quarter_start,
        trim(empresa) as operator,
        trim(departamento) as department,
        trim(provincia) as province,
        trim(distrito) as district,
        {{ name_key('departamento') }} as department_key,
        {{ name_key('provincia') }} as province_key,
        {{ name_key('distrito') }} as district_key,
        trim(tecnologia) as technology,
        -- published in mixed case (Residencial / RESIDENCIAL): one spelling per segment
        upper(left(trim(segmento), 1)) || lower(substr(trim(segmento), 2)) as segment,
        conexiones as connections,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at
    from quartered
)

select * from renamed

with

source as (
    {{ latest_batch_rows('raw', 'osiptel__fixed_connections') }}
),

periods as (
    select
        *,
        upper(regexp_replace(periodo, '\s+', '', 'g')) as period_clean
    from source
),

parsed as (
    select
        *,
        regexp_extract(period_clean, '^(\d{4})', 1)::integer as period_year,
        case
            -- 2015-T1, 2015T1, 2015-Q1, 2015Q1 (T = trimestre)
            when regexp_matches(period_clean, '^\d{4}-?[TQ][1-4]$')
                then regexp_extract(period_clean, '[TQ]([1-4])$', 1)::integer
            -- 2015-03 or 201503: the month closing (or inside) the quarter
            when regexp_matches(period_clean, '^\d{4}-?\d{1,2}$')
                then (regexp_extract(period_clean, '^\d{4}-?(\d{1,2})$', 1)::integer - 1) // 3 + 1
        end as period_quarter
    from periods
),

renamed as (
    select
        trim(periodo) as period_raw,
        period_year as year,
        period_quarter as quarter_number,
        period_year::varchar || '-Q' || period_quarter::varchar as quarter,
        make_date(period_year, (period_quarter - 1) * 3 + 1, 1) as quarter_start,
        trim(empresa) as operator,
        trim(departamento) as department,
        trim(provincia) as province,
        trim(distrito) as district,
        {{ name_key('departamento') }} as department_key,
        {{ name_key('provincia') }} as province_key,
        {{ name_key('distrito') }} as district_key,
        trim(tecnologia) as technology,
        trim(segmento) as segment,
        conexiones as connections,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at
    from parsed
)

select * from renamed

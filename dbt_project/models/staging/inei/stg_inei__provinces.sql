with

source as (
    {{ latest_batch_rows('raw', 'inei__provinces') }}
),

renamed as (
    select
        left({{ to_ubigeo('inei') }}, 4) as province_code,
        left({{ to_ubigeo('inei') }}, 2) as department_code,
        trim(departamento) as department,
        trim(provincia) as province,
        {{ name_key('departamento') }} as department_key,
        {{ name_key('provincia') }} as province_key,
        trim(regexp_replace(capital, '\s+', ' ', 'g')) as capital,
        superficie as area_km2,
        pob_densidad_2020 as density_2020_per_km2,
        altitude as altitude_m,
        latitude,
        longitude,
        idh_2019,
        pct_pobreza_total as poverty_2018_pct,
        pct_pobreza_extrema as extreme_poverty_2018_pct,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

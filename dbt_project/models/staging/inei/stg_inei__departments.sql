with

source as (
    {{ latest_batch_rows('raw', 'inei__departments') }}
),

renamed as (
    select
        left({{ to_ubigeo('inei') }}, 2) as department_code,
        trim(departamento) as department,
        {{ name_key('departamento') }} as department_key,
        trim(regexp_replace(capital, '\s+', ' ', 'g')) as capital,
        superficie as area_km2,
        pob_densidad_2020 as density_2020_per_km2,
        superficie * pob_densidad_2020 as population_2020,
        altitude as altitude_m,
        latitude,
        longitude,
        idh_2019,
        -- band midpoints in the published reference, not point estimates
        pct_pobreza_total as poverty_band_midpoint_pct,
        pct_pobreza_extrema as extreme_poverty_band_midpoint_pct,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

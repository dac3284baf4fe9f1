with

source as (
    {{ latest_batch_rows('raw', 'inei__districts') }}
),

renamed as (
    select
        {{ to_ubigeo('inei') }} as ubigeo,
        left({{ to_ubigeo('inei') }}, 2) as department_code,
        left({{ to_ubigeo('inei') }}, 4) as province_code,
        reniec as reniec_code,
        trim(departamento) as department,
        trim(provincia) as province,
        trim(distrito) as district,
        {{ name_key('departamento') }} as department_key,
        {{ name_key('provincia') }} as province_key,
        {{ name_key('distrito') }} as district_key,
        trim(region) as region,
        trim(macroregion_inei) as macro_region,
        trim(macroregion_minsa) as macro_region_minsa,
        -- two capitals carry a newline inside quotes in the published file
        trim(regexp_replace(capital, '\s+', ' ', 'g')) as capital,
        superficie as area_km2,
        pob_densidad_2020 as density_2020_per_km2,
        altitude as altitude_m,
        latitude,
        longitude,
        indice_vulnerabilidad_alimentaria as food_vulnerability_index,
        idh_2019,
        pct_pobreza_total as poverty_2018_pct,
        pct_pobreza_extrema as extreme_poverty_2018_pct,
        -- districts created after the reference's data vintage carry NA in every numeric column,
        -- centroid included (area alone may be 'S.I.' for otherwise complete districts)
        coalesce(latitude is not null and longitude is not null, false) as is_complete,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

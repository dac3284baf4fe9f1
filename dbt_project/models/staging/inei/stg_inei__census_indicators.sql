with

source as (
    {{ latest_batch_rows('raw', 'inei__census_indicators') }}
),

renamed as (
    select
        {{ to_ubigeo('ubigeo') }} as ubigeo,
        pob as population,
        -- the census file publishes the human development index in percent (64.2 = 0.642)
        idh / 100.0 as idh,
        pobreza as poverty_pct,
        pobreza_ext as extreme_poverty_pct,
        vuln_alim as food_vulnerability_pct,
        altitud as altitude_m,
        agua as water_pct,
        desague as sewage_pct,
        electricidad as electricity_pct,
        internet as internet_pct,
        ide_agua as state_density_water,
        ide_electricidad as state_density_electricity,
        ide_salud as state_density_health,
        ide_educacion as state_density_education,
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

with

source as (
    {{ latest_batch_rows('raw', 'osiptel__mobile_coverage') }}
),

renamed as (
    select
        -- UBIGEO_CCPP lost its leading zero: left-pad to 10 digits, the first 6 are the district
        lpad(ubigeo_ccpp::varchar, 10, '0') as populated_centre_code,
        {{ to_ubigeo('ubigeo_ccpp', width=10) }} as ubigeo,
        trim(departamento) as department,
        trim(provincia) as province,
        trim(distrito) as district,
        trim(centro_poblado) as populated_centre,
        trim(empresa_operadora) as operator,
        -- the published 0/1 flags (landing rejects any other value) as booleans
        has_2g::boolean as has_2g,
        has_3g::boolean as has_3g,
        has_4g::boolean as has_4g,
        has_5g::boolean as has_5g,
        hasta_1_mbps::boolean as has_up_to_1_mbps,
        mas_de_1_mbps::boolean as has_over_1_mbps,
        cant_eb_2g as base_stations_2g,
        cant_eb_3g as base_stations_3g,
        cant_eb_4g as base_stations_4g,
        cant_eb_5g as base_stations_5g,
        -- CALIFICACION and CANT_EB_TOTAL are derived columns of the file, not source data: not kept
        _source_file as source_file,
        _loaded_at as loaded_at
    from source
)

select * from renamed

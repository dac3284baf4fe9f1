{{ config(tags=['needs_predictions', 'needs_clusters']) }}

with

reference as (
    select * from {{ ref('stg_inei__districts') }}
    where ubigeo is not null
),

crosswalk as (
    select * from {{ ref('district_boundary_crosswalk') }}
),

-- older codes the reference still lists (with NA data) next to the current code of the same district
superseded as (
    select crosswalk.boundary_ubigeo as ubigeo
    from crosswalk
    where crosswalk.relation = 'recoded' and crosswalk.boundary_ubigeo <> crosswalk.ubigeo
),

districts as (
    select reference.*
    from reference
    where reference.is_complete or reference.ubigeo not in (select superseded.ubigeo from superseded)
),

features as (
    select * from {{ ref('stg_geo__district_boundaries') }}
),

polygons as (
    select * from {{ ref('dim_district_boundaries') }}
),

priorities as (
    select * from {{ ref('mart_district_priorities') }}
),

clusters as (
    select * from {{ ref('mart_district_clusters') }}
),

connectivity as (
    select * from {{ ref('fct_district_connectivity') }}
),

divide as (
    select * from {{ ref('mart_digital_divide_index') }}
),

-- the centroid of the province's first district (code ..01, the province capital's district): where a district
-- without any centroid of its own is placed, approximately
province_capitals as (
    select
        reference.province_code,
        reference.latitude,
        reference.longitude
    from reference
    where reference.is_complete and right(reference.ubigeo, 2) = '01'
),

located as (
    select
        districts.ubigeo,
        crosswalk.relation,
        crosswalk.parent_ubigeo,
        crosswalk.boundary_ubigeo as crosswalk_boundary_ubigeo,
        crosswalk.law,
        parent.district as parent_district,
        polygons.ubigeo is not null as has_polygon,
        polygons.boundary_source,
        polygons.boundary_ubigeo as polygon_boundary_ubigeo,
        polygons.geometry_geojson,
        features.ubigeo is not null as has_feature,
        coalesce(districts.latitude, parent.latitude, capital.latitude) as marker_latitude,
        coalesce(districts.longitude, parent.longitude, capital.longitude) as marker_longitude,
        case
            when districts.latitude is not null then 'centroid'
            when parent.latitude is not null then 'parent_centroid'
            when capital.latitude is not null then 'province_capital_centroid'
        end as marker_source
    from districts
    left join crosswalk on districts.ubigeo = crosswalk.ubigeo
    left join reference as parent on crosswalk.parent_ubigeo = parent.ubigeo and parent.is_complete
    left join province_capitals as capital on districts.province_code = capital.province_code
    left join polygons on districts.ubigeo = polygons.ubigeo
    left join features on districts.ubigeo = features.ubigeo
),

placed as (
    select
        located.*,
        case
            when located.has_polygon and located.boundary_source = 'recoded' then 'recoded_polygon'
            when located.has_polygon then 'own_polygon'
            when located.relation = 'created_from' then 'inside_parent_polygon'
            when located.has_feature then 'null_geometry'
            when located.marker_source <> 'centroid' then 'no_reference_data'
            else 'not_in_boundaries'
        end as map_reason
    from located
),

final as (
    select
        districts.ubigeo::varchar as ubigeo,
        districts.district::varchar as district,
        districts.province::varchar as province,
        districts.department::varchar as department,
        districts.department_code::varchar as department_code,
        districts.province_code::varchar as province_code,
        districts.capital::varchar as capital,
        districts.is_complete::boolean as has_reference_data,
        -- where and how the maps draw it
        (case when placed.has_polygon then 'polygon' else 'marker' end)::varchar as map_shape,
        placed.map_reason::varchar as map_reason,
        (case placed.map_reason
            when 'own_polygon' then null
            when 'recoded_polygon'
                then
                    'Polígono del archivo de límites de 2016, que lo trae con su código anterior '
                    || placed.polygon_boundary_ubigeo || coalesce(' (' || nullif(placed.law, '') || ')', '') || '.'
            when 'inside_parent_polygon'
                then
                    'Creado' || coalesce(' por ' || nullif(placed.law, ''), ' después del archivo de límites')
                    || ' a partir de ' || coalesce(placed.parent_district, placed.parent_ubigeo)
                    || ': el archivo de límites de 2016 no lo tiene; se muestra como punto en su centroide,'
                    || ' dentro del polígono de su distrito de origen.'
            when 'null_geometry'
                then
                    'El archivo de límites trae este distrito sin geometría: se muestra como punto en su centroide.'
            when 'not_in_boundaries'
                then
                    'El archivo de límites no trae este distrito: se muestra como punto en su centroide.'
            when 'no_reference_data' then
                'Distrito creado después de los datos de la referencia INEI (sin centroide, censo ni predicción):'
                || ' punto aproximado en el centroide '
                || (case placed.marker_source
                    when 'parent_centroid' then 'de su distrito de origen'
                    else 'del distrito capital de su provincia'
                end) || '.'
        end)::varchar as map_note,
        placed.geometry_geojson::varchar as geometry_geojson,
        coalesce(placed.polygon_boundary_ubigeo, placed.crosswalk_boundary_ubigeo)::varchar as boundary_ubigeo,
        placed.parent_ubigeo::varchar as parent_ubigeo,
        nullif(placed.law, '')::varchar as creation_law,
        districts.latitude::double as latitude,
        districts.longitude::double as longitude,
        placed.marker_latitude::double as marker_latitude,
        placed.marker_longitude::double as marker_longitude,
        placed.marker_source::varchar as marker_source,
        -- people and connectivity (households_offline and the priority as mart_district_priorities has them)
        priorities.population::double as population,
        priorities.households_offline::double as households_offline,
        priorities.internet_pct::double as internet_pct,
        connectivity.electricity_pct::double as electricity_pct,
        connectivity.pct_centres_4g::double as pct_centres_4g,
        connectivity.pct_centres_any_mobile::double as pct_centres_any_mobile,
        connectivity.poverty_pct::double as poverty_pct,
        -- the model
        priorities.run_id::varchar as run_id,
        priorities.model_name::varchar as model_name,
        priorities.predicted_internet_pct::double as predicted_internet_pct,
        priorities.lower_90::double as lower_90,
        priorities.upper_90::double as upper_90,
        priorities.is_out_of_fold::boolean as is_out_of_fold,
        priorities.gap_pp::double as gap_pp,
        -- ranks and scores
        divide.divide_index::double as divide_index,
        divide.infrastructure_score::double as infrastructure_score,
        divide.adoption_score::double as adoption_score,
        divide.socioeconomic_score::double as socioeconomic_score,
        divide.national_rank::integer as national_rank,
        priorities.shortfall_score::double as shortfall_score,
        priorities.priority_score::double as priority_score,
        priorities.priority_rank::integer as priority_rank,
        priorities.offline_priority_score::double as offline_priority_score,
        priorities.offline_priority_rank::integer as offline_priority_rank,
        priorities.error_group::varchar as error_group,
        priorities.shortfall_weight::double as shortfall_weight,
        -- segments and spatial clusters
        priorities.segment_id::integer as segment_id,
        priorities.segment_label::varchar as segment_label,
        clusters.internet_pct_cluster::varchar as internet_pct_cluster,
        clusters.divide_index_cluster::varchar as divide_index_cluster,
        clusters.gap_pp_cluster::varchar as gap_pp_cluster
    from districts
    inner join placed on districts.ubigeo = placed.ubigeo
    left join priorities on districts.ubigeo = priorities.ubigeo
    left join clusters on districts.ubigeo = clusters.ubigeo
    left join connectivity on districts.ubigeo = connectivity.ubigeo
    left join divide on districts.ubigeo = divide.ubigeo
)

select * from final

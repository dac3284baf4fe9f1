-- mart_district_profile lists every district of the INEI reference (its superseded codes aside, seed
-- district_boundary_crosswalk), with a polygon or a marker: no district silently missing from the maps.
{{ config(tags=['needs_predictions', 'needs_clusters']) }}

select reference.ubigeo, 'missing from the profile' as problem
from {{ ref('stg_inei__districts') }} as reference
where
    reference.ubigeo is not null
    and reference.ubigeo not in (select profile.ubigeo from {{ ref('mart_district_profile') }} as profile)
    and (
        reference.is_complete
        or reference.ubigeo not in (
            select crosswalk.boundary_ubigeo
            from {{ ref('district_boundary_crosswalk') }} as crosswalk
            where crosswalk.relation = 'recoded'
        )
    )

union all

select profile.ubigeo, 'polygon without geometry or marker with one' as problem
from {{ ref('mart_district_profile') }} as profile
where (profile.map_shape = 'polygon') <> (profile.geometry_geojson is not null)

-- Every feature of the latest district boundaries GeoJSON that has a geometry is drawn: as the polygon of its
-- own district, or of the district whose older code it carries (seed district_boundary_crosswalk, `recoded`).
-- A row here is a polygon dropped without a word (e.g. an IDDIST that is neither in the reference nor in the
-- crosswalk): add the crosswalk row that says which district it belongs to.
select features.ubigeo as feature_ubigeo
from {{ ref('stg_geo__district_boundaries') }} as features
where
    features.has_geometry
    and features.ubigeo not in (
        select drawn.boundary_ubigeo
        from {{ ref('dim_district_boundaries') }} as drawn
    )

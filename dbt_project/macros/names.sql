{#- Canonical form of a place name for matching: no accents, upper case, single spaces, no punctuation. -#}
{% macro name_key(expr) -%}
    nullif(trim(regexp_replace(upper(strip_accents(trim({{ expr }}))), '[^A-Z0-9]+', ' ', 'g')), '')
{%- endmacro %}

{#- A ubigeo as 6-char text with leading zeros. `width` > 6 pads to that width first and keeps the first
    6 digits (UBIGEO_CCPP is a 10-digit populated-centre code whose first 6 digits are the district). -#}
{% macro to_ubigeo(expr, width=6) -%}
    {%- if width == 6 -%}
        lpad(trim({{ expr }}::varchar), 6, '0')
    {%- else -%}
        left(lpad(trim({{ expr }}::varchar), {{ width }}, '0'), 6)
    {%- endif -%}
{%- endmacro %}

{#- Percentile rank (0..100) of a non-null value among the non-null values of the column; null stays null. -#}
{% macro percentile_score(expr) -%}
    case
        when ({{ expr }}) is not null
            then 100.0 * percent_rank() over (partition by ({{ expr }}) is null order by {{ expr }})
    end
{%- endmacro %}

{#- Spelling-tolerant form of a place name, for similarity only (never for equality): the name key of the
    name without parenthesised parts, with the spelling alternations common between Peruvian registries
    folded together: HUA/WA (Quechua), QUI/KI, Z/S, Y/I, doubled CC and LL, and the particles DE/DEL. -#}
{% macro name_phonetic_key(expr) -%}
    trim(
        replace(replace(replace(replace(
            regexp_replace(regexp_replace(regexp_replace(
                ' ' || {{ name_key("regexp_replace(" ~ expr ~ ", '\\([^)]*\\)', ' ', 'g')") }} || ' ',
                ' DEL? ', ' ', 'g'),
                'HU([AEI])', 'W\1', 'g'),
                'QU([EI])', 'K\1', 'g'),
            'Z', 'S'), 'Y', 'I'), 'CC', 'C'), 'LL', 'L')
    )
{%- endmacro %}

{#- Similarity (0..1) of two names: the better of the Jaro-Winkler similarity of their name keys and of
    their spelling-tolerant keys. -#}
{% macro name_similarity(key_a, key_b, phonetic_a, phonetic_b) -%}
    greatest(jaro_winkler_similarity({{ key_a }}, {{ key_b }}), jaro_winkler_similarity({{ phonetic_a }}, {{ phonetic_b }}))
{%- endmacro %}

{#- The reference department (dim_departments) most similar to each published department name: one row per
    department_key of `published` (a relation or CTE with department_key and department_phonetic), with the
    candidate's code, name and key and its name_similarity as match_score; ties go to the lowest code. The
    caller decides whether the score reaches var('name_match_threshold'). -#}
{% macro best_department_match(published) -%}
    select
        published.department_key,
        departments.department_code,
        departments.department as candidate_department,
        departments.department_key as candidate_department_key,
        {{ name_similarity(
            'published.department_key', 'departments.department_key',
            'published.department_phonetic', 'departments.department_phonetic'
        ) }} as match_score
    from {{ published }} as published
    cross join {{ ref('dim_departments') }} as departments
    qualify row_number() over (
        partition by published.department_key order by match_score desc, departments.department_code asc
    ) = 1
{%- endmacro %}

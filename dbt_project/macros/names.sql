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

{#- Share in percent (0..100) of the weighted mean of a 0/1 column, nulls excluded. -#}
{% macro weighted_pct(flag, weight) -%}
    100.0 * sum({{ weight }} * {{ flag }}) / nullif(sum(case when {{ flag }} is not null then {{ weight }} end), 0)
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

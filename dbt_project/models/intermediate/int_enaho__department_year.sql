{#-
  ENAHO module 100: weighted share of households with each ICT good, per department and survey year,
  and its standard error by Taylor linearisation of the weighted mean (a ratio estimator):

    p    = sum(w_i * y_i) / W,           W = sum(w_i)  over households with an answer
    z_c  = sum over households i of PSU c of w_i * (y_i - p) / W
    var  = m / (m - 1) * sum_c z_c^2     (m = number of PSUs, CONGLOME, in the department-year)
    se   = sqrt(var)

  This is the with-replacement "ultimate cluster" estimator with the conglomerate as primary sampling
  unit and no stratification (Stata: svyset conglome [pw=factor07]). Shares and standard errors are in
  percent / percentage points. The standard error is null when the department-year has a single PSU.
-#}
{%- set goods = {
    'internet': 'has_internet',
    'mobile': 'has_mobile_phone',
    'fixed_phone': 'has_fixed_phone',
    'cable_tv': 'has_cable_tv',
} -%}

with

households as (
    select
        department_code,
        survey_year,
        conglomerate,
        expansion_weight,
        has_internet,
        has_mobile_phone,
        has_fixed_phone,
        has_cable_tv
    from {{ ref('stg_inei__enaho_households') }}
    where expansion_weight > 0
),

answers as (
    {%- for good, column in goods.items() %}
        select
            department_code,
            survey_year,
            conglomerate,
            '{{ good }}' as good,
            expansion_weight as weight,
            {{ column }}::double as owns
        from households
        where {{ column }} is not null
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

means as (
    select
        department_code,
        survey_year,
        good,
        sum(weight) as weight_total,
        sum(weight * owns) / sum(weight) as share,
        count(distinct conglomerate) as psus
    from answers
    group by department_code, survey_year, good
),

psu_scores as (
    select
        answers.department_code,
        answers.survey_year,
        answers.good,
        answers.conglomerate,
        sum(answers.weight * (answers.owns - means.share)) / means.weight_total as score
    from answers
    inner join means
        on
            answers.department_code = means.department_code
            and answers.survey_year = means.survey_year
            and answers.good = means.good
    group by answers.department_code, answers.survey_year, answers.good, answers.conglomerate, means.weight_total
),

variances as (
    select
        means.department_code,
        means.survey_year,
        means.good,
        means.share,
        case
            when means.psus > 1 then means.psus / (means.psus - 1.0) * sum(psu_scores.score * psu_scores.score)
        end as variance
    from means
    inner join psu_scores
        on
            means.department_code = psu_scores.department_code
            and means.survey_year = psu_scores.survey_year
            and means.good = psu_scores.good
    group by means.department_code, means.survey_year, means.good, means.share, means.psus
),

sample_sizes as (
    select
        department_code,
        survey_year,
        count(*) as households_sampled,
        sum(expansion_weight) as households_weighted
    from households
    group by department_code, survey_year
),

final as (
    select
        sample_sizes.department_code,
        sample_sizes.survey_year,
        sample_sizes.households_sampled,
        sample_sizes.households_weighted,
    {%- for good in goods %}
        100.0 * max(case when variances.good = '{{ good }}' then variances.share end) as {{ good }}_pct,
        100.0 * sqrt(max(case when variances.good = '{{ good }}' then variances.variance end)) as {{ good }}_se
        {{- "," if not loop.last }}
    {%- endfor %}
    from sample_sizes
    left join variances
        on
            sample_sizes.department_code = variances.department_code
            and sample_sizes.survey_year = variances.survey_year
    group by
        sample_sizes.department_code,
        sample_sizes.survey_year,
        sample_sizes.households_sampled,
        sample_sizes.households_weighted
)

select * from final

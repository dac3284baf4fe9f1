{#-
  ENAHO module 01: weighted share of households with each ICT good, per department and survey year, and its
  design-based standard error by Taylor linearisation of the weighted mean (a ratio estimator), with the
  design ENAHO publishes (Stata: svyset conglome [pw=factor07], strata(estrato)):

    p     = sum(w_i * y_i) / W,            W = sum(w_i)  over complete interviews with an answer
    z_hc  = sum over households i of PSU c in stratum h of w_i * (y_i - p) / W
    var   = sum_h n_h / (n_h - 1) * sum_c (z_hc - mean_h(z))^2    (n_h = PSUs of stratum h)
    se    = sqrt(var)

  PSU = conglomerate (CONGLOME), stratum = ESTRATO within the department (the department-year is the
  domain of estimation). A stratum with a single PSU in the department-year adds nothing (Stata's
  singleunit(certainty)); the standard error is null when the department-year has a single PSU.
  Only complete interviews (RESULT = 1) count, in numerator and denominator: the others have blank ICT
  answers; they are counted in households_incomplete. Shares and standard errors are in percent /
  percentage points.
-#}
{%- set goods = {
    'internet': 'has_internet',
    'fixed_internet': 'has_fixed_internet',
    'mobile': 'has_mobile_phone',
    'fixed_phone': 'has_fixed_phone',
    'cable_tv': 'has_cable_tv',
} -%}

with

all_households as (
    select
        department_code,
        survey_year,
        coalesce(stratum, 0) as stratum,
        conglomerate,
        expansion_weight,
        is_complete_interview,
        has_internet,
        has_fixed_internet,
        has_mobile_phone,
        has_fixed_phone,
        has_cable_tv
    from {{ ref('stg_inei__enaho_households') }}
    where expansion_weight > 0
),

households as (
    select * from all_households
    where is_complete_interview
),

answers as (
    {%- for good, column in goods.items() %}
        select
            department_code,
            survey_year,
            stratum,
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
        answers.stratum,
        answers.conglomerate,
        sum(answers.weight * (answers.owns - means.share)) / means.weight_total as score
    from answers
    inner join means
        on
            answers.department_code = means.department_code
            and answers.survey_year = means.survey_year
            and answers.good = means.good
    group by
        answers.department_code, answers.survey_year, answers.good, answers.stratum, answers.conglomerate,
        means.weight_total
),

strata as (
    select
        department_code,
        survey_year,
        good,
        stratum,
        case
            when count(*) > 1
                then count(*) / (count(*) - 1.0) * sum(score * score) - sum(score) * sum(score) / (count(*) - 1.0)
            else 0.0
        end as variance
    from psu_scores
    group by department_code, survey_year, good, stratum
),

variances as (
    select
        means.department_code,
        means.survey_year,
        means.good,
        means.share,
        case when means.psus > 1 then greatest(sum(strata.variance), 0.0) end as variance
    from means
    inner join strata
        on
            means.department_code = strata.department_code
            and means.survey_year = strata.survey_year
            and means.good = strata.good
    group by means.department_code, means.survey_year, means.good, means.share, means.psus
),

sample_sizes as (
    select
        department_code,
        survey_year,
        count(*) filter (where is_complete_interview) as households_sampled,
        count(*) filter (where not is_complete_interview) as households_incomplete,
        sum(expansion_weight) filter (where is_complete_interview) as households_weighted
    from all_households
    group by department_code, survey_year
),

final as (
    select
        sample_sizes.department_code,
        sample_sizes.survey_year,
        sample_sizes.households_sampled,
        sample_sizes.households_incomplete,
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
    where sample_sizes.households_sampled > 0
    group by
        sample_sizes.department_code,
        sample_sizes.survey_year,
        sample_sizes.households_sampled,
        sample_sizes.households_incomplete,
        sample_sizes.households_weighted
)

select * from final

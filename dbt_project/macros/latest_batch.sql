{#-
  Rows of one raw table that belong to the latest successful landing batch.

  A landing batch is one `brecha ingest DIR`: the folder is taken as the complete set of extracts.
  raw._batch_files lists every file of every batch with its sha256; the raw tables keep every file
  ever landed (a file landed twice is stored once). Staging reads, for every raw table, only the rows
  whose _source_sha256 is a file of the latest successful batch, the one row of the view
  raw._latest_ok_batch (created with the ledger by the landing step, brecha/core/layouts.py), so an older
  synthetic batch never mixes with a newer folder of real files.
-#}
{% macro latest_batch_rows(source_name, table_name) -%}
    select *
    from {{ source(source_name, table_name) }}
    where _source_sha256 in (
        select batch_files.sha256
        from {{ source('raw', '_batch_files') }} as batch_files
        inner join {{ source('raw', '_latest_ok_batch') }} as latest_ok_batch
            on batch_files.batch_id = latest_ok_batch.batch_id
        where batch_files.entity = '{{ table_name }}'
    )
{%- endmacro %}

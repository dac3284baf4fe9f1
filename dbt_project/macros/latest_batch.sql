{#-
  Rows of one raw table that belong to the latest successful landing batch.

  A landing batch is one `brecha ingest DIR`: the folder is taken as the complete set of extracts.
  raw._batch_files lists every file of every batch with its sha256; the raw tables keep every file
  ever landed (a file landed twice is stored once). Staging reads, for every raw table, only the rows
  whose _source_sha256 is a file of the latest batch whose status is 'ok', so an older synthetic
  batch never mixes with a newer folder of real files.
-#}
{% macro latest_batch_rows(source_name, table_name) -%}
    select *
    from {{ source(source_name, table_name) }}
    where _source_sha256 in (
        select batch_files.sha256
        from {{ source('raw', '_batch_files') }} as batch_files
        where batch_files.entity = '{{ table_name }}'
          and batch_files.batch_id = (
              select max(batches.batch_id)
              from {{ source('raw', '_batches') }} as batches
              where batches.status = 'ok'
          )
    )
{%- endmacro %}

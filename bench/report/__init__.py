"""The report: records in (``reading``, checked against the JSON Schemas), grouped by set
and configuration (``grouping``), seeds pooled (``seeds``), what the records support said
(``headlines``), tables and plots out (``build``, ``plots``) as markdown (``mdtext``) and
one self-contained HTML page (``html``). It reads records, never a live model."""

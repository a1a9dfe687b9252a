"""What people see: human figures, tables that fit the terminal, one rendering per job.

The `--json` contract is not here (cli/output.py emits it byte for byte); this package only shapes
the human and the tabular (`-o table|wide|tsv|csv`) forms of the same data.
"""

"""`redis-maint report`: the evidence an external auditor asks for, as one HTML page, CSV or JSON.

period: the range asked for (dates without a zone are UTC); data: the report's facts, built from
history rows; html_page and csv_rows: the two renderings of those facts (JSON is the facts as they are).
"""

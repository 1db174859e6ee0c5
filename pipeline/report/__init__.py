"""The run's report: report.json (the data) and report.md (the same, for people).

markdown.py builds the report dict from the stages' results and renders it section by section;
sections.py holds the smaller sections and the number formats they share.
"""

from pipeline.report.markdown import build, to_markdown, write

__all__ = ["build", "to_markdown", "write"]

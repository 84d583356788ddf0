"""The report document and its renderings (JSON, JUnit, HTML, Markdown)."""

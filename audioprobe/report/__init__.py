"""What the report says, one module per section; ``report/page.py`` lays it out."""

"""SimCLR Lab's Streamlit dashboard. Imports db/ only (never torch); see app.py for the entry point."""

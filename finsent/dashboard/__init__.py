"""The Streamlit dashboard: store queries, pure figure and table builders, and its pages."""

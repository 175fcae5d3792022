"""The Streamlit dashboard: store queries, pure figure builders, and the app page."""

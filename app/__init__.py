"""The Streamlit app that shows a CapsNet at work (entry point: app/streamlit_app.py)."""

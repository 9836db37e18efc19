"""The diffgrm explorer (``streamlit_app.py``), shipped inside the package as ``diffgrm.app``.

``diffgrm app`` finds the script here with ``importlib.resources``; from a clone,
``streamlit run app/streamlit_app.py`` runs the same file. Importing this package imports nothing.
"""

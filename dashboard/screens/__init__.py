"""The dashboard's pages, one script each (run by st.navigation; `render()` is their body).

Not called `pages/`: Streamlit treats a `pages/` folder next to the entry script as an old-style
multipage app and warns when st.navigation is used alongside it.
"""

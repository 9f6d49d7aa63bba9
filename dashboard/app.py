"""SimCLR Lab dashboard: `streamlit run dashboard/app.py` (the README's `./lab.sh serve`).

Pages (st.navigation): Launch, Runs, Run detail (deep link ?run=ID), Compare, Workers. This entry script
runs on every interaction: it gates on the optional password, keeps a local worker alive when no
other worker is, draws the sidebar, and runs the chosen page.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import DBAPIError

from dashboard import auth, nav, safety
from dashboard.common import get_engine
from dashboard.local_worker import LocalWorker
from db.migrate import SchemaError
from db.session import default_url, describe_url


@st.cache_resource(show_spinner=False)
def _local_worker(db_url: str) -> LocalWorker:
    return LocalWorker(db_url)


def sidebar() -> None:
    engine = get_engine()
    status = _local_worker(default_url()).ensure(engine)
    st.sidebar.caption(f"Workers: {status}. Runs go on when the dashboard stops; "
                       "`python -m engine worker --stop` stops the workers of this machine.")
    st.sidebar.caption(f"Database: {engine.url.render_as_string(hide_password=True)}")


def main() -> None:
    st.set_page_config(page_title="SimCLR Lab", page_icon=":material/science:", layout="wide")
    problem = safety.refusal(st.get_option("server.address"), auth.configured_password() is not None,
                             st.context.headers.get("Host"))
    if problem:  # listening on the network without a password, or a DNS-rebinding Host: draw nothing
        st.navigation(nav.pages(), position="hidden")
        st.error(problem)
        return
    signed_in = auth.is_authenticated()
    # The pages are registered either way, so that a deep link such as /run?run=7 keeps its page
    # and query through the sign-in; signed out, the sign-in form is drawn instead of the page.
    page = st.navigation(nav.pages(), position="sidebar" if signed_in else "hidden")
    if not signed_in:
        auth.sign_in_page()
        return
    if page.title == nav.LAUNCH.title and "run" in st.query_params:
        # The short deep link, the bare address with ?run=ID, means that run's page. (Making Run
        # detail the default page instead would move it to "/" and break the /run?run=ID links.)
        nav.switch(nav.RUN, run=st.query_params["run"])
    try:
        get_engine()
    except (SchemaError, DBAPIError) as e:
        # Corrupt, read-only, newer than this code...: one line, not a traceback, and no page.
        reason = str(e.orig if isinstance(e, DBAPIError) and e.orig is not None else e).strip().splitlines()[0]
        st.error(f"The run database {describe_url(default_url())} cannot be used: {reason}")
        return
    sidebar()
    page.run()


main()

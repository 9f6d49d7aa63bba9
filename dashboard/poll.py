"""Live redraws that stop while nobody looks: a fragment's timer that pauses in hidden tabs.

Streamlit's own `st.fragment(run_every=...)` asks the server for a redraw on a plain browser
timer, visible or not, so every forgotten background tab costs the server a fragment run per tick
(issue 12: about 0.15 core per open Runs tab before the shared queries of dashboard/live.py).
`every(seconds)` replaces it: called inside an `@st.fragment`, it mounts an invisible component
whose script asks for a rerun of that fragment every `seconds` while `document.visibilityState`
is "visible", asks for none while the tab is hidden, and asks at once when the tab comes back (so
what a person sees on return is current, not `seconds` old).

Only what changed travels: Streamlit sends an element of 10 kB or more (the runs table, a chart)
as a reference to the copy the browser already holds when its content is unchanged
(`global.minCachedMessageSize`, runtime/forward_msg_cache.py), so an idle tab's redraw is a few
hundred bytes; `bench/twenty_tabs.py` measures the bytes per tab per second.
"""

from __future__ import annotations

import streamlit as st

# A chain of setTimeout, not setInterval, so that hiding the tab simply ends the chain and showing
# it starts a new one. Like Streamlit's own timer it asks every `seconds` while visible, whether or
# not the last redraw has come back (Streamlit folds a request that arrives during a rerun into it).
# If Streamlit calls the script again when it re-renders the component, the returned clean-up ends
# the previous timer first.
_JS = """
export default function (component) {
  const { setTriggerValue, data } = component;
  const everyMs = data.every_ms;
  let timer = null;
  let last = Date.now();
  const visible = () => document.visibilityState === "visible";
  const tick = () => {
    timer = null;
    if (!visible()) return;            // hidden: no request; visibilitychange restarts us
    last = Date.now();
    window.simclrLabPollRequests = (window.simclrLabPollRequests || 0) + 1;  // what the e2e test counts
    setTriggerValue("tick", last);
    plan();
  };
  const plan = () => { if (timer === null) timer = setTimeout(tick, everyMs); };
  const onVisibility = () => {
    if (!visible()) { clearTimeout(timer); timer = null; return; }
    if (Date.now() - last >= everyMs) tick(); else plan();
  };
  document.addEventListener("visibilitychange", onVisibility);
  plan();
  return () => { clearTimeout(timer); document.removeEventListener("visibilitychange", onVisibility); };
}
"""

_timer = st.components.v2.component("simclr_lab.poll", js=_JS)


def _ignore() -> None:
    """The tick needs no handling: that it reran the fragment is the point."""


def every(seconds: float, key: str) -> None:
    """Rerun the enclosing fragment every `seconds` while its tab is visible (call inside @st.fragment)."""
    _timer(key=key, data={"every_ms": int(seconds * 1000)}, height=0, on_tick_change=_ignore)

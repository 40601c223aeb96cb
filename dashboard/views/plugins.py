"""Plugins: the health table (name, version, hooks, what each registered, status, error, captured output)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.dashboard.common import get_registry, guarded, public_text
from transferlab.dashboard.tables import show_table


def render() -> None:
    st.title("Plugins")
    registry = get_registry()
    stubs = {name for name, t in registry.tasks.items() if t.stub}
    health = registry.health()
    rows = []
    for row in health:
        registered = "; ".join(f"{kind}: " + ", ".join(n + (" (stub)" if n in stubs else "") for n in names)
                               for kind, names in row["registered"].items())
        rows.append(dict(plugin=row["name"], version=row["version"], builtin="yes" if row["builtin"] else "no",
                         hooks=", ".join(row["hooks"]), registered=registered, status=row["status"],
                         error=public_text(row["error"] or ""), output="yes" if row["output"] else ""))
    frame = pd.DataFrame(rows)
    broken = frame[frame["status"] != "ok"]
    timed_out = frame[frame["status"] == "timed out"]
    if broken.empty:
        st.success(f"All {len(frame)} plugins loaded.")
    else:
        late = f" ({len(timed_out)} timed out)" if len(timed_out) else ""
        st.warning(f"{len(broken)} of {len(frame)} plugins reported an error{late}; the others work normally.")
    show_table(frame)
    printed = [row for row in health if row["output"]]
    if printed:
        st.subheader("What plugins printed while loading")
        for row in printed:
            with st.expander(f"{row['name']} ({row['status']})"):
                st.code(public_text(row["output"]), language=None)
    st.caption("Third-party plugins come from the `transferlab` entry-point group. `TRANSFERLAB_PLUGINS=a,b` loads "
               "only the named ones; `TRANSFERLAB_STRICT_PLUGINS=1` makes a broken plugin an error; "
               "`TRANSFERLAB_PLUGIN_TIMEOUT` (seconds, default 10) is how long each plugin's import and each hook "
               "may take before it is reported `timed out` and left out. What a plugin prints while loading is "
               "shown above, never mixed into the app's output.")


guarded(render)

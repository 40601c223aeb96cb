"""Plugins: the health table (name, version, hooks, what each registered, status, error)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.dashboard.common import get_registry, guarded


def render() -> None:
    st.title("Plugins")
    registry = get_registry()
    stubs = {name for name, t in registry.tasks.items() if t.stub}
    rows = []
    for row in registry.health():
        registered = "; ".join(f"{kind}: " + ", ".join(n + (" (stub)" if n in stubs else "") for n in names)
                               for kind, names in row["registered"].items())
        rows.append(dict(plugin=row["name"], version=row["version"], builtin="yes" if row["builtin"] else "no",
                         hooks=", ".join(row["hooks"]), registered=registered, status=row["status"],
                         error=row["error"] or ""))
    frame = pd.DataFrame(rows)
    broken = frame[frame["status"] == "error"]
    if broken.empty:
        st.success(f"All {len(frame)} plugins loaded.")
    else:
        st.warning(f"{len(broken)} of {len(frame)} plugins reported an error; the others work normally.")
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption("Third-party plugins come from the `transferlab` entry-point group. `TRANSFERLAB_PLUGINS=a,b` loads "
               "only the named ones; `TRANSFERLAB_STRICT_PLUGINS=1` makes a broken plugin an error.")


guarded(render)

"""Plotly charts that update in place when the user (or the step) changes.

``st.plotly_chart`` gives every new figure a new element (its id hashes the figure), so on each user
switch the browser builds every chart from scratch. A chart drawn with :func:`live_chart` is one
small component per ``key`` that stays mounted: a new figure reaches it as new arguments, and its
page (``chart_frame.html``, with the plotly.js of the installed plotly package) draws it with
``Plotly.react``, plotly's update path. The figures themselves still come from ``diffgrm.viz``.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit.components.v1 as components

from diffgrm.text import cache_dir

FRAME = Path(__file__).with_name("chart_frame.html")


@lru_cache(maxsize=1)
def _folder() -> Path:
    """The frame page beside plotly.js, made once per plotly version and frame page in diffgrm's
    cache (nothing is downloaded): what the component serves."""
    folder = cache_dir() / "live-chart" / f"plotly-{plotly.__version__}-{int(FRAME.stat().st_mtime)}"
    if not (folder / "index.html").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
        shutil.copyfile(FRAME, folder / "index.html.part")
        (folder / "index.html.part").replace(folder / "index.html")  # last: a folder with it is complete
    return folder


def _component():
    return components.declare_component("diffgrm_live_chart", path=str(_folder()))


def live_chart(figure: go.Figure, *, key: str) -> None:
    """Draw ``figure`` in the chart called ``key``, updating the one already there in place."""
    _component()(spec=figure.to_json(), key=key, default=None)

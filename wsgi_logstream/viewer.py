"""The HTML page that streams a log: one document, its CSS inline, no assets.

With JavaScript off it is still a live page: the log grows inside a
``column-reverse`` scroller, which keeps the view pinned to the newest line as
the browser parses more of the document, and the summary paragraph at the end
says plainly whether the operation succeeded (``:has()`` hides the "running"
badge once it arrives).
"""

from __future__ import annotations

import html
import time

__all__ = ["page_head"]

_CSS = """
:root{color-scheme:light dark;--bg:#fbfbfa;--fg:#1d1f21;--dim:#6b7280;--line:#e5e7eb;
--w:#a15c00;--e:#c0262d;--ok:#177245;--bar:#2563eb}
@media (prefers-color-scheme:dark){:root{--bg:#15171a;--fg:#e6e6e6;--dim:#9ca3af;--line:#2a2e33;
--w:#f0b400;--e:#ff6b6b;--ok:#4ade80;--bar:#60a5fa}}
html,body{height:100%;margin:0}
body{display:flex;flex-direction:column;background:var(--bg);color:var(--fg);
font:14px/1.45 ui-sans-serif,system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;gap:1em;align-items:center;padding:.5em 1em;border-bottom:1px solid var(--line)}
header h1{font-size:1.05em;margin:0;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#state{font-size:.85em;padding:.1em .6em;border-radius:1em;background:var(--bar);color:#fff}
body:has(#end) #state{display:none}
main{flex:1;overflow:auto;display:flex;flex-direction:column-reverse;padding:0 1em}
#log{margin:.5em 0;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
white-space:pre-wrap;overflow-wrap:anywhere}
.r.d{color:var(--dim)}.r.w{color:var(--w)}.r.e,.r.c{color:var(--e)}.r.c{font-weight:700}
.drop{color:var(--w);font-style:italic}
.pg{display:block;color:var(--dim)}.pg progress{width:14em;vertical-align:middle}
.pg:not(:last-of-type){display:none}
.end{margin:.5em 0 1em;padding:.5em .8em;border-radius:.4em;font-weight:600;border:1px solid}
.end.ok{color:var(--ok)}.end:not(.ok){color:var(--e)}
"""


def page_head(title: str, started: float, *, resumable: bool = False) -> str:
    """Everything up to the opening ``<pre>`` the log lines stream into."""
    safe = html.escape(title)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{safe}</title><style>{_CSS}</style></head>\n"
        f'<body data-resumable="{"1" if resumable else "0"}"><header><h1>{safe}</h1><span id="state">running</span>'
        f'<time datetime="{when}">{when}</time></header>\n'
        '<main><div><pre id="log">\n'
    )

"""The few HTML pages a person sees: an error page for a refused connection, and a default landing page."""

from __future__ import annotations

from html import escape

from aiohttp import web

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
code{{background:#f3f3f3;padding:.1rem .3rem}}</style></head>
<body><h1 id="title">{title}</h1><p id="message">{message}</p>{extra}</body></html>
"""


def page(title: str, message: str, *, status: int = 200, extra: str = "") -> web.Response:
    body = _PAGE.format(title=escape(title), message=escape(message), extra=extra)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def error_page(title: str, message: str, code: str, status: int) -> web.Response:
    extra = (
        f'<p>Error code: <code id="code">{escape(code)}</code></p>'
        '<p><a href="/v1/connect">Start the connection again</a></p>'
    )
    return page(title, message, status=status, extra=extra)


def connected_page(account_id: str, *, drafts_only: bool = False) -> web.Response:
    message = "The TikTok account is connected. You can close this window."
    extra = f'<p>Account: <code id="account">{escape(account_id)}</code></p>'
    if drafts_only:
        extra += (
            '<p id="mode">Drafts only: the video.publish permission was not granted, so videos go to '
            "the creator's TikTok inbox to finish there; connect again and allow it to post directly.</p>"
        )
    return page("Account connected", message, extra=extra)

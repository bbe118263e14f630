"""Typed keys for what the app holds (aiohttp ``web.AppKey``); set by app.py's cleanup contexts."""

from __future__ import annotations

from aiohttp import web

from auth_service.handlers.accounts import Accounts
from auth_service.handlers.connect import ConnectFlow
from auth_service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CONNECT = web.AppKey("connect", ConnectFlow)
ACCOUNTS = web.AppKey("accounts", Accounts)

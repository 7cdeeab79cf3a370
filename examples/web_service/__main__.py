"""``python -m examples.web_service [--port 8000] [--fastapi]``: serve the web service.

Without DASHSCOPE_API_KEY it runs on an emulator started in this process: no key, no network.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from .app import create_app

parser = argparse.ArgumentParser(prog="python -m examples.web_service")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--fastapi", action="store_true", help="serve the FastAPI variant")
args = parser.parse_args()

if args.fastapi:
    import uvicorn

    uvicorn.run("examples.web_service.fastapi_app:app", host=args.host, port=args.port)
else:
    web.run_app(create_app(), host=args.host, port=args.port)  # prints its URL

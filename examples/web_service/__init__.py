"""A small web service that turns uploads into EMO and Emoji videos (see README.md here).

``app.py`` is the aiohttp app, ``fastapi_app.py`` the same API on FastAPI; both build on
``service.py``. ``python -m examples.web_service`` serves it on the embedded emulator.
"""

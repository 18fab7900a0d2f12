"""The receiver as most users would write it by hand: the benchmark's baseline.

Flask, the stdlib's ElementTree, and sqlite3 with one INSERT + COMMIT per
state (WAL, synchronous=FULL). Served by Flask's own threaded server
(``app.run(threaded=True)``: Werkzeug, one thread per connection), the way a
small webhook endpoint is commonly deployed. Request logging is switched off
so the baseline is not slowed by printing one line per request.

    python bench/baseline_flask.py --db /tmp/base.sqlite3 --port 8001
"""

import argparse
import logging
import sqlite3
import threading
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from flask import Flask, Response, request

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    id_sms INTEGER NOT NULL,
    state TEXT NOT NULL,
    sms TEXT,
    viber TEXT,
    time TEXT
)
"""
INSERT = "INSERT INTO events (id_sms, state, sms, viber, time) VALUES (?, ?, ?, ?, ?)"
HEADER = '<?xml version="1.0" encoding="utf-8" ?>\n'


def connect(path: str) -> sqlite3.Connection:
    """Open the database in WAL mode with a full fsync on every commit."""
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def create_app(path: str) -> Flask:
    """Build the Flask app; each server thread keeps its own connection."""
    app = Flask(__name__)
    local = threading.local()
    connect(path).execute(SCHEMA)

    def db() -> sqlite3.Connection:
        if not hasattr(local, "db"):
            local.db = connect(path)
        return local.db  # type: ignore[no-any-return]

    @app.post("/webhook")
    def webhook() -> Response:
        root = ET.fromstring(request.get_data())
        stored = []
        for state in root.iter("state"):
            id_sms = state.get("id_sms", "")
            row = (int(id_sms), state.text or "", state.get("sms"), state.get("viber"))
            db().execute(INSERT, (*row, state.get("time")))
            db().commit()
            stored.append(f"<id_sms>{escape(id_sms)}</id_sms>")
        body = f"{HEADER}<response>{''.join(stored)}</response>"
        return Response(body, mimetype="application/xml")

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Flask baseline webhook receiver")
    parser.add_argument("--db", required=True, help="path of the SQLite file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    create_app(args.db).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()

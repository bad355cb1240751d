"""A small notes app: JSON, form posts, a cookie, a download and a streamed export."""

import json
import os
import threading

from flask import Flask, Response, abort, jsonify, redirect, request, url_for

app = Flask(__name__)
_lock = threading.Lock()
_notes: dict[int, str] = {}  # per instance: a real app keeps them in a database


@app.get("/")
def index():
    with _lock:
        notes = [{"id": k, "text": v} for k, v in sorted(_notes.items())]
    return jsonify(title=os.environ.get("NOTES_TITLE", "Notes"), notes=notes,
                   visitor=request.cookies.get("visitor"))


@app.post("/")
def add():
    text = request.form.get("text") or (request.get_json(silent=True) or {}).get("text")
    if not text:
        abort(400, "send 'text' as a form field or in a JSON body")
    with _lock:
        note_id = max(_notes, default=0) + 1
        _notes[note_id] = text
    response = redirect(url_for("index"), code=303) if request.form else jsonify(id=note_id)
    response.set_cookie("visitor", "known", httponly=True)
    return response


@app.get("/<int:note_id>")
def show(note_id: int):
    if note_id not in _notes:
        abort(404)
    return jsonify(id=note_id, text=_notes[note_id])


@app.delete("/<int:note_id>")
def remove(note_id: int):
    with _lock:
        if _notes.pop(note_id, None) is None:
            abort(404)
    return "", 204


@app.get("/export")
def export():
    def lines():
        for note_id, text in sorted(_notes.items()):
            yield json.dumps({"id": note_id, "text": text}) + "\n"

    return Response(lines(), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=notes.ndjson"})

"""The OpenAPI document of ``studio serve`` and an offline ``/docs`` page made from it (the
routes read their bodies themselves, so the request schemas are named here)."""

from __future__ import annotations

import json
from typing import Any

from studio.server import schemas


def body_doc(model: Any) -> dict[str, Any]:
    """``openapi_extra`` naming the request body's schema (the routes read the body themselves,
    to keep errors OpenAI-shaped and the JSON parser bounded)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def form_doc(model: Any) -> dict[str, Any]:
    """``openapi_extra`` for a multipart body: the model's fields plus the files."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def openapi_document(app: Any) -> dict[str, Any]:
    if not getattr(app, "_studio_openapi", None):
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.ChatBody, schemas.ImageBody, schemas.EditBody,
                      schemas.EmbeddingBody):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app._studio_openapi = doc
    return app._studio_openapi


def docs_page(doc: dict[str, Any]) -> str:
    """/docs without a CDN: the OpenAPI document as plain HTML (FastAPI's Swagger UI page loads
    its scripts from the internet, and is blank on a machine without it)."""
    from html import escape

    parts = [f"<!doctype html><meta charset=utf-8><title>{escape(doc['info']['title'])} API"
             "</title><style>body{font:15px system-ui;max-width:60em;margin:2em auto}"
             "code,pre{background:#f3f3f3;padding:2px 4px}</style>",
             f"<h1>{escape(doc['info']['title'])} API {escape(doc['info']['version'])}</h1>",
             f"<p>{escape(doc['info'].get('description', ''))} The machine-readable document "
             "is <a href=/openapi.json>/openapi.json</a>.</p>"]
    components = doc.get("components", {}).get("schemas", {})
    for path, methods in doc.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>"
                         f"<p>{escape(op.get('summary', ''))}</p>")
            content = op.get("requestBody", {}).get("content", {})
            first: dict[str, Any] = next(iter(content.values()), {})
            ref = first.get("schema", {}).get("$ref", "")
            schema = components.get(ref.rsplit("/", 1)[-1]) if ref else None
            if schema:
                required = set(schema.get("required", []))
                parts.append("<ul>" + "".join(
                    f"<li><code>{escape(name)}</code>{' (required)' if name in required else ''}"
                    f" — {escape(json.dumps(prop, ensure_ascii=False))}</li>"
                    for name, prop in schema.get("properties", {}).items()) + "</ul>")
    return "\n".join(parts)

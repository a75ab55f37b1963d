"""ETSI GS QKD 014 v1.1.1: the REST API's data formats (§6), shared by the client and the KME simulator.

Pydantic models for each format, strict on what they accept from the wire: unknown members of the
standard's formats are ignored (the standard allows extensions in ``*_extension`` members only, but real
KMEs add members, and ignoring them is what a client must do to interoperate), types are checked, sizes
are bounded. ``openapi()`` is the OpenAPI 3.1 description the simulator serves, built from these models.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

API = "/api/v1/keys"
MAX_KEYS_PER_REQUEST = 128  # our bound on "number", whatever a KME's max_key_per_request says
MAX_KEY_BITS = 8192  # our bound on "size"
MAX_SAE_ID = 128  # characters
MAX_KEY_ID = 128


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Status(_Wire):
    """§6.1 Status."""

    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int = Field(ge=1)
    stored_key_count: int = Field(ge=0)
    max_key_count: int = Field(ge=0)
    max_key_per_request: int = Field(ge=1)
    max_key_size: int = Field(ge=1)
    min_key_size: int = Field(ge=1)
    max_SAE_ID_count: int = Field(ge=0)
    status_extension: dict[str, Any] | None = None


class KeyRequest(_Wire):
    """§6.2 Key request (the body of a POST enc_keys)."""

    number: int = Field(1, ge=1, le=MAX_KEYS_PER_REQUEST)
    size: int | None = Field(None, ge=8, le=MAX_KEY_BITS)
    additional_slave_SAE_IDs: list[str] = Field(default_factory=list, max_length=16)
    extension_mandatory: list[dict[str, Any]] = Field(default_factory=list, max_length=16)
    extension_optional: list[dict[str, Any]] = Field(default_factory=list, max_length=16)


class Key(_Wire):
    """One member of §6.3 Key container's ``keys``."""

    key_ID: str = Field(min_length=1, max_length=MAX_KEY_ID)
    key: str = Field(min_length=1, max_length=MAX_KEY_BITS // 6 + 8)  # base64
    key_ID_extension: dict[str, Any] | None = None
    key_extension: dict[str, Any] | None = None

    @field_validator("key")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            raise ValueError("key is not base64") from None
        return value

    def material(self) -> bytearray:
        """The key's bytes, in a bytearray the caller can zero when done."""
        return bytearray(base64.b64decode(self.key, validate=True))

    def __repr__(self) -> str:  # never print key material
        return f"Key(key_ID={self.key_ID!r}, key=<{len(self.key)} base64 chars>)"

    __str__ = __repr__


class KeyContainer(_Wire):
    """§6.3 Key container."""

    keys: list[Key] = Field(max_length=MAX_KEYS_PER_REQUEST)
    key_container_extension: dict[str, Any] | None = None


class KeyIDRef(_Wire):
    key_ID: str = Field(min_length=1, max_length=MAX_KEY_ID)
    key_ID_extension: dict[str, Any] | None = None


class KeyIDs(_Wire):
    """§6.4 Key IDs (the body of a POST dec_keys)."""

    key_IDs: list[KeyIDRef] = Field(min_length=1, max_length=MAX_KEYS_PER_REQUEST)
    key_IDs_extension: dict[str, Any] | None = None


class Error(_Wire):
    """§6.5 Error."""

    message: str
    details: list[dict[str, Any]] | None = None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def openapi(saes: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API as the simulator serves it (status, enc_keys, dec_keys; GET and
    POST), with the error answers the standard names (400, 401, 503). ``saes``: the SAE IDs this KME knows,
    listed as the path parameter's values."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    answers = (("400", "Bad request format"), ("401", "Unauthorized"), ("503", "Error of server side"))
    errors = {code: {"description": text, "content": error} for code, text in answers}
    sae_schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_SAE_ID}
    if saes:
        sae_schema = {"type": "string", "enum": list(saes)}
    sae = {"name": "SAE_ID", "in": "path", "required": True, "schema": sae_schema}

    def answer(ref: str) -> dict[str, Any]:
        return {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}, **errors}

    container = answer("#/components/schemas/KeyContainer")
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyRequest"}}}}
    ids = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyIDs"}}}}
    components: dict[str, Any] = {}
    for model in (Status, KeyRequest, KeyContainer, KeyIDs, Error):
        schema = _schema(model)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "ETSI GS QKD 014 key delivery (pqproxy KME simulator)", "version": "1.1.1"},
        "paths": {
            f"{API}/{{SAE_ID}}/status": {"get": {"operationId": "getStatus", "parameters": [sae],
                                                 "responses": answer("#/components/schemas/Status")}},
            f"{API}/{{SAE_ID}}/enc_keys": {
                "get": {"operationId": "getKey", "parameters": [
                    sae,
                    {"name": "number", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                 "maximum": MAX_KEYS_PER_REQUEST}},
                    {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 8,
                                                               "maximum": MAX_KEY_BITS}}],
                        "responses": container},
                "post": {"operationId": "postKey", "parameters": [sae], "requestBody": body, "responses": container},
            },
            f"{API}/{{SAE_ID}}/dec_keys": {
                "get": {"operationId": "getKeyWithKeyIDs", "parameters": [
                    sae, {"name": "key_ID", "in": "query", "required": True,
                          "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_ID}}],
                        "responses": container},
                "post": {"operationId": "postKeyWithKeyIDs", "parameters": [sae], "requestBody": ids,
                         "responses": container},
            },
        },
        "components": {"schemas": components},
    }

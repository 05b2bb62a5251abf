import CED
import Foundation

/// The API as an OpenAPI 3.0 document (`GET /openapi.json`).
enum OpenAPIDocument {
    static func json(model: String) -> String {
        template.replacingOccurrences(of: "@VERSION@", with: cedVersion)
            .replacingOccurrences(of: "@MODEL@", with: String(CedJSONText.quoted(model).dropFirst().dropLast()))
    }

    static let template = #"""
    {
      "openapi": "3.0.3",
      "info": {
        "title": "CED audio tagger (ced serve)",
        "version": "@VERSION@",
        "description": "Sound recognition with CED (527 AudioSet classes) serving the model @MODEL@. Audio goes in as multipart/form-data (field `file`, plus parameters as form fields) or as the raw body (audio/*, application/octet-stream) with parameters in the query. WAV is decoded natively, other formats through ffmpeg reading from a pipe. Every error is {\"error\": {\"code\", \"type\", \"message\"}}. With --api-key every route but /healthz and /readyz needs Authorization: Bearer <key>."
      },
      "components": {
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        "parameters": {
          "top_k": { "name": "top_k", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 5 }, "description": "Classes to report (per clip, or per window); 0 = all." },
          "threshold": { "name": "threshold", "in": "query", "schema": { "type": "number" }, "description": "Classification: report only classes scoring at least this. Events: a window score that starts an event (default 0.5)." },
          "model": { "name": "model", "in": "query", "schema": { "type": "string" }, "description": "Must name the served model (its id or last path component) when given." },
          "chunking": { "name": "chunking", "in": "query", "schema": { "type": "string", "enum": ["hf", "original"], "default": "hf" }, "description": "How clips longer than 10 s are combined." },
          "window": { "name": "window", "in": "query", "schema": { "type": "number", "exclusiveMinimum": true, "minimum": 0 }, "description": "Window length, seconds (events: default 2; classification: adds segments)." },
          "hop": { "name": "hop", "in": "query", "schema": { "type": "number", "exclusiveMinimum": true, "minimum": 0 }, "description": "Step between windows, seconds (events: default a quarter of the window)." },
          "release": { "name": "release", "in": "query", "schema": { "type": "number" }, "description": "An event lasts while window scores stay at or above this (default: the threshold)." },
          "merge_gap": { "name": "merge_gap", "in": "query", "schema": { "type": "number", "minimum": 0, "default": 0 }, "description": "Merge events of one class closer than this, seconds." },
          "min_duration": { "name": "min_duration", "in": "query", "schema": { "type": "number", "minimum": 0, "default": 0 }, "description": "Drop events shorter than this, seconds." },
          "fill": { "name": "fill", "in": "query", "schema": { "type": "number", "minimum": 0, "maximum": 1, "default": 0.25 }, "description": "Where onsets and offsets are placed (0.5: window midpoints)." },
          "thresholds": { "name": "thresholds", "in": "query", "schema": { "type": "string" }, "description": "Per-class thresholds, CSV text label,threshold[,release] per line." }
        },
        "requestBodies": {
          "audio": {
            "required": true,
            "content": {
              "multipart/form-data": {
                "schema": {
                  "type": "object",
                  "required": ["file"],
                  "properties": {
                    "file": { "type": "string", "format": "binary" },
                    "model": { "type": "string" }, "top_k": { "type": "integer" }, "threshold": { "type": "number" },
                    "window": { "type": "number" }, "hop": { "type": "number" }, "release": { "type": "number" },
                    "merge_gap": { "type": "number" }, "min_duration": { "type": "number" }, "fill": { "type": "number" },
                    "thresholds": { "type": "string" }, "chunking": { "type": "string" }, "format": { "type": "string" }
                  }
                }
              },
              "audio/*": { "schema": { "type": "string", "format": "binary" } },
              "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
            }
          }
        },
        "schemas": {
          "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "type", "message"], "properties": {
              "code": { "type": "integer", "description": "The HTTP status." },
              "type": { "type": "string", "description": "invalid_request, invalid_parameter, unsupported_media_type, payload_too_large, invalid_audio, request_timeout, over_capacity, unauthorized, not_found, model_not_found, …" },
              "message": { "type": "string" } } } }
          },
          "Prediction": { "type": "object", "required": ["index", "label", "score"], "properties": { "index": { "type": "integer" }, "label": { "type": "string" }, "score": { "type": "number" } } },
          "Segment": { "type": "object", "properties": { "start": { "type": "number" }, "end": { "type": "number" }, "labels": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } } } },
          "Classification": {
            "type": "object", "required": ["model", "detections"],
            "properties": {
              "model": { "type": "string" },
              "detections": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" }, "description": "Highest score first." },
              "duration_s": { "type": "number" },
              "segments": { "type": "array", "items": { "$ref": "#/components/schemas/Segment" } }
            }
          },
          "Event": {
            "type": "object", "required": ["label", "index", "start", "end", "score", "mean_score"],
            "properties": { "label": { "type": "string" }, "index": { "type": "integer" }, "start": { "type": "number" }, "end": { "type": "number" },
                            "score": { "type": "number" }, "mean_score": { "type": "number" }, "id": { "type": "integer" }, "ongoing": { "type": "boolean" } }
          },
          "Window": { "type": "object", "properties": { "window": { "type": "integer" }, "start": { "type": "number" }, "end": { "type": "number" }, "labels": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } } } },
          "EventResult": {
            "type": "object", "required": ["file", "duration_s", "model", "events"],
            "properties": { "file": { "type": "string" }, "duration_s": { "type": "number" }, "model": { "type": "string" },
                            "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                            "windows": { "type": "array", "items": { "$ref": "#/components/schemas/Window" } } }
          },
          "Embedding": {
            "type": "object", "required": ["model", "shape", "embedding"],
            "properties": { "model": { "type": "string" }, "file": { "type": "string" }, "duration_s": { "type": "number" },
                            "shape": { "type": "array", "items": { "type": "integer" } }, "embedding": { "type": "array", "items": { "type": "number" } } }
          },
          "Report": {
            "type": "object",
            "description": "The data of the picture: clip tags, events, the window scores of the top classes (curves) and the log-mel spectrogram (mel: bins × columns bytes, base64, 0 = db_min, 255 = db_max).",
            "properties": { "file": { "type": "string" }, "duration_s": { "type": "number" }, "model": { "type": "string" },
                            "labels": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } },
                            "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                            "curves": { "type": "object" }, "mel": { "type": "object" } }
          }
        },
        "responses": {
          "BadRequest": { "description": "A parameter or the form is invalid.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Unauthorized": { "description": "Missing or wrong API key.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "NotFound": { "description": "The model named is not served here.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Timeout": { "description": "The request took longer than --timeout.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "TooLarge": { "description": "The body is larger than --max-body-mb.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Unsupported": { "description": "The content type is not audio (or needs ffmpeg, which is missing).", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Undecodable": { "description": "The audio cannot be decoded or holds non-finite samples; the message is the decoder's.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
          "Busy": { "description": "Over capacity (--max-concurrency); retry after Retry-After seconds.", "headers": { "Retry-After": { "schema": { "type": "integer" } } }, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
      },
      "security": [{ "bearer": [] }],
      "paths": {
        "/v1/audio/classification": {
          "post": {
            "summary": "Tag a clip (LocalAI-compatible).",
            "description": "The clip's classes, highest score first: the same values as `ced tag --format json`. With `format` (json, jsonl, csv, table) exactly what `ced tag --format F` prints for the file.",
            "parameters": [{ "$ref": "#/components/parameters/top_k" }, { "$ref": "#/components/parameters/threshold" }, { "$ref": "#/components/parameters/model" },
                           { "$ref": "#/components/parameters/chunking" }, { "$ref": "#/components/parameters/window" }, { "$ref": "#/components/parameters/hop" },
                           { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "jsonl", "csv", "table"] } }],
            "requestBody": { "$ref": "#/components/requestBodies/audio" },
            "responses": {
              "200": { "description": "Detections.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Classification" } } } },
              "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "404": { "$ref": "#/components/responses/NotFound" },
              "408": { "$ref": "#/components/responses/Timeout" }, "413": { "$ref": "#/components/responses/TooLarge" }, "415": { "$ref": "#/components/responses/Unsupported" },
              "422": { "$ref": "#/components/responses/Undecodable" }, "503": { "$ref": "#/components/responses/Busy" }
            }
          }
        },
        "/v1/audio/events": {
          "post": {
            "summary": "Sound events in a recording.",
            "description": "Exactly what `ced tag --events --format json` prints for the file (an array of one result); `windows=1` adds every window's top classes. `format`: json, jsonl, csv, table, audacity, raven.",
            "parameters": [{ "$ref": "#/components/parameters/window" }, { "$ref": "#/components/parameters/hop" }, { "$ref": "#/components/parameters/threshold" },
                           { "$ref": "#/components/parameters/release" }, { "$ref": "#/components/parameters/merge_gap" }, { "$ref": "#/components/parameters/min_duration" },
                           { "$ref": "#/components/parameters/fill" }, { "$ref": "#/components/parameters/thresholds" }, { "$ref": "#/components/parameters/model" },
                           { "$ref": "#/components/parameters/top_k" },
                           { "name": "windows", "in": "query", "schema": { "type": "boolean" } },
                           { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "jsonl", "csv", "table", "audacity", "raven"] } }],
            "requestBody": { "$ref": "#/components/requestBodies/audio" },
            "responses": {
              "200": { "description": "Events.", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/EventResult" } } } } },
              "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "404": { "$ref": "#/components/responses/NotFound" },
              "408": { "$ref": "#/components/responses/Timeout" }, "413": { "$ref": "#/components/responses/TooLarge" }, "415": { "$ref": "#/components/responses/Unsupported" },
              "422": { "$ref": "#/components/responses/Undecodable" }, "503": { "$ref": "#/components/responses/Busy" }
            }
          }
        },
        "/v1/audio/embeddings": {
          "post": {
            "summary": "The clip embedding (the vector the classification head reads, as `ced embed`).",
            "parameters": [{ "$ref": "#/components/parameters/model" }],
            "requestBody": { "$ref": "#/components/requestBodies/audio" },
            "responses": {
              "200": { "description": "Embedding.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Embedding" } } } },
              "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "404": { "$ref": "#/components/responses/NotFound" },
              "408": { "$ref": "#/components/responses/Timeout" }, "413": { "$ref": "#/components/responses/TooLarge" }, "415": { "$ref": "#/components/responses/Unsupported" },
              "422": { "$ref": "#/components/responses/Undecodable" }, "503": { "$ref": "#/components/responses/Busy" }
            }
          }
        },
        "/v1/audio/report": {
          "post": {
            "summary": "The picture's data: log-mel, score curves, events and tags (what the page at / draws); format=html: the self-contained page.",
            "parameters": [{ "$ref": "#/components/parameters/window" }, { "$ref": "#/components/parameters/hop" }, { "$ref": "#/components/parameters/threshold" },
                           { "$ref": "#/components/parameters/release" }, { "$ref": "#/components/parameters/merge_gap" }, { "$ref": "#/components/parameters/min_duration" },
                           { "$ref": "#/components/parameters/fill" }, { "$ref": "#/components/parameters/top_k" }, { "$ref": "#/components/parameters/model" },
                           { "name": "curves", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 64, "default": 8 } },
                           { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "html"] } }],
            "requestBody": { "$ref": "#/components/requestBodies/audio" },
            "responses": {
              "200": { "description": "Report.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Report" } }, "text/html": { "schema": { "type": "string" } } } },
              "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" },
              "408": { "$ref": "#/components/responses/Timeout" }, "413": { "$ref": "#/components/responses/TooLarge" }, "415": { "$ref": "#/components/responses/Unsupported" },
              "422": { "$ref": "#/components/responses/Undecodable" }, "503": { "$ref": "#/components/responses/Busy" }
            }
          }
        },
        "/v1/audio/stream": {
          "get": {
            "summary": "Live tagging over a WebSocket.",
            "description": "Send {\"type\": \"start\", \"sample_rate\": 48000, \"format\": \"f32le\"|\"s16le\", \"channels\": 1, …} (with the options of /v1/audio/events, plus ongoing, windows, top_k, when_behind), then binary messages of interleaved little-endian samples, then {\"type\": \"stop\"}. The server sends {\"type\": \"started\"}, {\"type\": \"window\", \"window\", \"start\", \"end\", \"labels\"}, {\"type\": \"event\", the fields of an event, \"id\", \"ongoing\"}, and {\"type\": \"done\"} before closing; a malformed message gets {\"type\": \"error\", \"error\": {…}} and a close.",
            "responses": { "101": { "description": "Switching to the WebSocket protocol." }, "426": { "description": "Not a WebSocket upgrade." }, "401": { "$ref": "#/components/responses/Unauthorized" }, "503": { "$ref": "#/components/responses/Busy" } }
          }
        },
        "/v1/models": {
          "get": { "summary": "The served model (OpenAI's list shape).", "responses": { "200": { "description": "Models.", "content": { "application/json": { "schema": { "type": "object" } } } }, "401": { "$ref": "#/components/responses/Unauthorized" } } }
        },
        "/healthz": { "get": { "summary": "Liveness.", "security": [], "responses": { "200": { "description": "The process is up." } } } },
        "/readyz": { "get": { "summary": "Readiness: the model is loaded and the server is not shutting down.", "security": [], "responses": { "200": { "description": "Ready." }, "503": { "description": "Shutting down." } } } },
        "/metrics": { "get": { "summary": "Prometheus metrics.", "responses": { "200": { "description": "Text exposition format.", "content": { "text/plain": { "schema": { "type": "string" } } } }, "401": { "$ref": "#/components/responses/Unauthorized" } } } },
        "/openapi.json": { "get": { "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3.0.", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
        "/": { "get": { "summary": "The web page: drop a file or listen to the microphone.", "responses": { "200": { "description": "HTML.", "content": { "text/html": { "schema": { "type": "string" } } } } } } }
      }
    }
    """#
}

-- SPDX-License-Identifier: LGPL-2.1-or-later
-- wrk script: POST /api/generate with stream:false, the non-streamed inference request an
-- Ollama client sends. Model from $BENCH_MODEL (default llama3.2). Reports via report.lua.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local model = os.getenv("BENCH_MODEL") or "llama3.2"

wrk.method = "POST"
wrk.path = "/api/generate"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"model":"%s","prompt":"Why is the sky blue?","stream":false}', model)

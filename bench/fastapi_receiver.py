"""The old service's stack, for comparison: FastAPI + uvicorn + asyncpg,
checking FAL's shared-secret signature (the same canonical message as the
host's fal-hmac scheme) and inserting the delivery. Run by the benchmark
campaign (host/benches/campaign.rs) with two uvicorn workers."""

import hashlib
import hmac
import os
import time

import asyncpg
from fastapi import FastAPI, Request, Response

SECRET = os.environ["FAL_WEBHOOK_SECRET"].encode()
app = FastAPI()
pool = None


@app.on_event("startup")
async def startup():
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=16)


@app.post("/api/v1/avatar/status_update")
async def status_update(request: Request):
    body = await request.body()
    headers = request.headers
    request_id = headers.get("x-fal-webhook-request-id")
    user_id = headers.get("x-fal-webhook-user-id")
    timestamp = headers.get("x-fal-webhook-timestamp")
    signature = headers.get("x-fal-webhook-signature")
    if not (request_id and user_id and timestamp and signature):
        return Response(status_code=401)
    if abs(time.time() - int(timestamp)) > 300:
        return Response(status_code=401)
    message = f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    expected = hmac.new(SECRET, message.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return Response(status_code=401)
    await pool.execute(
        "INSERT INTO fastapi_events (delivery_id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        request_id,
        body,
    )
    return {"status": "accepted"}

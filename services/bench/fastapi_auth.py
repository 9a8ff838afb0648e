"""The login baseline for BENCHMARKS.md: the FastAPI template (seeds/module-design-template.md:
FastAPI, CORS middleware, lifespan) doing what lucid-auth-service's POST /auth/login does, as
a Python service would: Argon2id with the same parameters (argon2-cffi, m=19 MiB, t=2, p=1),
an EdDSA (Ed25519) access token (PyJWT), an opaque refresh token kept as its SHA-256. Users
and refresh tokens live in process memory: no MongoDB or Redis round trips, which the Rust
service makes (a lighter job for the baseline). Run with uvicorn, one worker."""
import hashlib
import os
import secrets
import time
from contextlib import asynccontextmanager

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
KEY = Ed25519PrivateKey.generate()
USERS = {}
REFRESH = {}
DUMMY = HASHER.hash(secrets.token_hex(16))


@asynccontextmanager
async def lifespan(app: FastAPI):
    USERS["admin"] = HASHER.hash(os.environ.get("BENCH_PASSWORD", "bench-password"))
    yield


app = FastAPI(title="Auth Service", description="baseline", version="1.0.0", lifespan=lifespan)
app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"])


class Credentials(BaseModel):
    username: str
    password: str


@app.get("/health")
async def health_check():
    return {"status": "healthy", "service": "lucid-auth-service"}


# A plain `def`: FastAPI runs it in its thread pool, and argon2-cffi releases the GIL while
# hashing, so hashes run in parallel (the template's `async def` would run one at a time).
@app.post("/auth/login")
def login(credentials: Credentials):
    stored = USERS.get(credentials.username.casefold())
    try:
        HASHER.verify(stored or DUMMY, credentials.password)
    except VerifyMismatchError:
        raise HTTPException(status_code=401, detail="unknown user or wrong password")
    if stored is None:
        raise HTTPException(status_code=401, detail="unknown user or wrong password")
    now = int(time.time())
    claims = {"iss": "lucid-auth-service", "sub": credentials.username, "aud": "api-gateway", "iat": now, "exp": now + 300}
    access = jwt.encode(claims, KEY, algorithm="EdDSA")
    refresh = secrets.token_urlsafe(32)
    REFRESH[hashlib.sha256(refresh.encode()).hexdigest()] = credentials.username
    return {"access_token": access, "token_type": "Bearer", "expires_in": 300, "refresh_token": refresh}

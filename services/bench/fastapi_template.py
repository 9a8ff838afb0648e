"""The baseline for BENCHMARKS.md: a service written to seeds/module-design-template.md
(FastAPI, CORS middleware, lifespan, the same /health document), run with uvicorn."""
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield


app = FastAPI(title="Session Storage Service", description="baseline", version="1.0.0", lifespan=lifespan)
app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"])


@app.get("/health")
async def health_check():
    return {"status": "healthy", "service": "session-storage", "timestamp": datetime.utcnow().isoformat()}


@app.get("/")
async def root():
    return {"service": "session-storage", "status": "running"}

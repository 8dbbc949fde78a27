"""The server a user would write without ortpipe: FastAPI + ``transformers.pipeline``, one call per request.

    python -m ortpipe.benchmarks.seed_server --checkpoint CKPT --port 8081 --threads 2

The comparison point (c) of :mod:`ortpipe.benchmarks.serve_load`: the seed
PyTorch path behind HTTP, answering ``{"inputs": "text"}`` like ``/predict``.
"""

from __future__ import annotations

import argparse


def make_app(checkpoint: str, threads: int):
    import torch
    from fastapi import FastAPI
    from transformers import pipeline

    torch.set_num_threads(threads)
    classify = pipeline("text-classification", model=checkpoint, tokenizer=checkpoint, device="cpu")
    app = FastAPI()

    @app.get("/ready")
    def ready():
        return {"ready": True}

    @app.post("/predict")
    def predict(body: dict):  # a plain def: FastAPI runs it in its thread pool, as such apps usually do
        return classify(body["inputs"], top_k=None, truncation=True)

    return app


def main(argv=None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    uvicorn.run(make_app(args.checkpoint, args.threads), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
